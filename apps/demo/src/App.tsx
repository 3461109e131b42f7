/**
 * The demo: a Notion-style page per room, with the faces of everyone on it at the top and,
 * next to each section's heading, the faces of whoever is reading that section.
 * Routing is three lines of History API: `/rooms/:roomId`, anything else is the lobby.
 */
import { cleanName, loadProfile, saveName, type Profile } from "./profile";
import type { User } from "@herenow/client";
import { SignInError, devTokenSource, loadSignIn, saveSignIn } from "./signin";
import {
  ActivityLog,
  AvatarStack,
  PresenceProvider,
  TypingIndicator,
  UserAvatar,
  agoPhrase,
  displayName,
  durationPhrase,
  useFollow,
  useOthers,
  usePresence,
  usePublishLocation,
  useRecentlyLeft,
  useSelf,
  useTyping,
} from "@herenow/react";
import { useEffect, useMemo, useRef, useState, type MouseEvent } from "react";
import { ROOMS, roomInfo, roomPath, routeOf } from "./routes";
import { SECTIONS, applySightings, currentSection } from "./sections";
import { timingsFrom } from "./settings";

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

/** Follows the address bar: pushState for our links, popstate for back and forward. */
function usePath(): [string, (to: string) => void] {
  const [path, setPath] = useState(() => window.location.pathname);
  useEffect(() => {
    const onPop = () => setPath(window.location.pathname);
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  const navigate = (to: string) => {
    if (to === window.location.pathname) return;
    window.history.pushState(null, "", to + window.location.search);
    setPath(to);
  };
  return [path, navigate];
}

function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return settled;
}

export function App() {
  const [path, navigate] = usePath();
  const route = routeOf(path);
  useEffect(() => {
    if (route.redirect) window.history.replaceState(null, "", route.canonical + window.location.search);
  }, [route.redirect, route.canonical]);

  const [profile] = useState<Profile>(() => loadProfile(storage(), window.location.search));
  const [timings] = useState(() => timingsFrom(window.location.search));
  const [name, setName] = useState(profile.name);
  const hintName = useDebounced(cleanName(name) || profile.name, 300);
  useEffect(() => saveName(storage(), hintName), [hintName]);

  useEffect(() => {
    document.title = `${roomInfo(route.room).title} · herenow`;
  }, [route.room]);

  // Development sign-in: a verified user, one face on every device signed in with the name.
  const [signedIn, setSignedIn] = useState<string | null>(() => loadSignIn(storage()));
  const [signInNote, setSignInNote] = useState<string | null>(null);
  const getToken = useMemo(() => (signedIn ? devTokenSource(signedIn) : undefined), [signedIn]);
  const signIn = async () => {
    const who = cleanName(name) || profile.name;
    try {
      await devTokenSource(who)(); // Is the route there? Say why not, rather than retry.
      saveSignIn(storage(), who);
      setSignInNote(null);
      setSignedIn(who);
    } catch (e) {
      setSignInNote(e instanceof SignInError ? e.message : "sign-in failed: is the server up?");
    }
  };
  const signOut = (note: string | null = null) => {
    saveSignIn(storage(), null);
    setSignInNote(note);
    setSignedIn(null);
  };

  return (
    <PresenceProvider
      // A new sign-in state is a new connection: the token goes in the hello.
      key={signedIn ?? "anonymous"}
      room={route.room}
      user={{ name: hintName, color: profile.color }}
      {...(getToken ? { getToken } : {})}
      options={timings}
      onAuthError={(error) => signOut(`Signed out: ${error.detail ?? error.code} (${error.message})`)}
    >
      <Page
        room={route.room}
        navigate={navigate}
        name={name}
        onName={setName}
        signedIn={signedIn}
        signInNote={signInNote}
        onSignIn={() => void signIn()}
        onSignOut={() => signOut()}
      />
    </PresenceProvider>
  );
}

function Page(props: {
  room: string;
  navigate: (to: string) => void;
  name: string;
  onName: (name: string) => void;
  signedIn: string | null;
  signInNote: string | null;
  onSignIn: () => void;
  onSignOut: () => void;
}) {
  const { room, navigate } = props;
  const info = roomInfo(room);
  const follow = (to: string) => (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.altKey || e.button !== 0) return; // new tab etc.
    e.preventDefault();
    navigate(to);
  };

  return (
    <div className="app">
      <aside className="sidebar">
        <div className="brand">
          <span className="brand__mark" aria-hidden="true" />
          herenow
        </div>
        <nav aria-label="Rooms">
          <p className="sidebar__heading">Rooms</p>
          <ul className="rooms">
            {ROOMS.map((r) => (
              <li key={r.id}>
                <a
                  href={roomPath(r.id)}
                  onClick={follow(roomPath(r.id))}
                  aria-current={r.id === room ? "page" : undefined}
                >
                  <span className="tile" style={{ background: r.tint }} aria-hidden="true">
                    {r.title[0]}
                  </span>
                  {r.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <section className="signin" aria-label="Sign-in">
          {props.signedIn ? (
            <>
              <p className="signin__who">
                Signed in as <strong>{props.signedIn}</strong>
              </p>
              <button type="button" className="signin__button" onClick={props.onSignOut}>
                Sign out
              </button>
            </>
          ) : (
            <button type="button" className="signin__button" onClick={props.onSignIn}>
              Sign in as {cleanName(props.name) || "…"}
            </button>
          )}
          {props.signInNote ? <p className="signin__note">{props.signInNote}</p> : null}
        </section>
        <p className="sidebar__hint">
          {props.signedIn
            ? "Signed in, every tab and device with your name is one face, shown as verified."
            : "Each tab is a visitor. Open this page in a second tab and a second face appears at the top."}
        </p>
      </aside>

      <main className="main">
        <header className="topbar">
          <div className="crumbs">
            <span className="crumbs__muted">Rooms</span>
            <span className="crumbs__sep" aria-hidden="true">
              /
            </span>
            <span className="crumbs__current">{info.title}</span>
          </div>
          <div className="topbar__presence">
            <AvatarStack max={5} size={32} />
            <ConnectionBadge />
          </div>
        </header>

        <article className="doc">
          <div className="doc__icon" style={{ background: info.tint }} aria-hidden="true">
            {info.title[0]}
          </div>
          <h1 className="doc__title">{info.title}</h1>
          <p className="doc__blurb">
            {info.blurb} <code className="doc__path">{roomPath(room)}</code>
          </p>

          <div className="doc__grid">
            <div className="doc__main">
              <section className="card">
                <label className="field">
                  <span className="field__label">Your name</span>
                  <input
                    className="field__input"
                    value={props.name}
                    maxLength={40}
                    autoComplete="nickname"
                    onChange={(e) => props.onName(e.target.value)}
                  />
                </label>
                <NoteField />
              </section>

              <Sections />
            </div>

            <aside className="side">
              <section className="card card--quiet">
                <h2 className="card__title">Here now</h2>
                <People />
              </section>
              <section className="card card--quiet">
                <h2 className="card__title">Activity</h2>
                <ActivityLog max={8} />
              </section>
            </aside>
          </div>
        </article>
      </main>
    </div>
  );
}

function NoteField() {
  const { onInput, stop } = useTyping();
  return (
    <label className="field">
      <span className="field__label">Notes</span>
      <textarea
        className="field__input field__input--area"
        rows={6}
        placeholder="Start typing: the others see that you are."
        onInput={onInput}
        onBlur={stop}
      />
      <TypingIndicator className="field__typing" />
    </label>
  );
}

/**
 * The page's sections, each with a small stack of who is reading it. An
 * IntersectionObserver watches a thin reading band near the top of the window; the section
 * crossing it is this tab's location.
 */
function Sections() {
  const [current, setCurrent] = useState<string | null>(null);
  const refs = useRef(new Map<string, HTMLElement>());
  usePublishLocation(current);

  useEffect(() => {
    if (typeof IntersectionObserver === "undefined") return;
    const order = SECTIONS.map((s) => s.id);
    let visible = new Set<string>();
    const observer = new IntersectionObserver(
      (entries) => {
        visible = applySightings(
          visible,
          entries.map((e) => ({ id: e.target.id, visible: e.isIntersecting })),
        );
        setCurrent(currentSection(order, visible));
      },
      // The band from 20 % to 25 % of the window's height: where a heading sits while read.
      { rootMargin: "-20% 0px -75% 0px", threshold: 0 },
    );
    for (const el of refs.current.values()) observer.observe(el);
    return () => observer.disconnect();
  }, []);

  return (
    <div className="sections">
      {SECTIONS.map((section) => (
        <section
          key={section.id}
          id={section.id}
          ref={(el) => {
            if (el) refs.current.set(section.id, el);
            else refs.current.delete(section.id);
          }}
          className={`section ${current === section.id ? "section--current" : ""}`}
          aria-labelledby={`${section.id}-title`}
        >
          <header className="section__head">
            <h2 className="section__title" id={`${section.id}-title`}>
              {section.title}
            </h2>
            <AvatarStack location={section.id} size={24} max={4} className="section__stack" />
          </header>
          {section.body.map((p) => (
            <p key={p} className="section__text">
              {p}
            </p>
          ))}
        </section>
      ))}
    </div>
  );
}

const sectionTitle = (id: string | undefined) => SECTIONS.find((s) => s.id === id)?.title;

function statusText(u: User, now: number): string {
  if (u.status === "active") return u.tabs > 1 ? `active · ${u.tabs} tabs` : "active";
  const held = u.statusSince > 0 ? durationPhrase(now - u.statusSince) : "";
  return held ? `${u.status} ${held}` : u.status;
}

function People() {
  const self = useSelf();
  const others = useOthers();
  const recent = useRecentlyLeft();
  const { following, follow, stop } = useFollow();
  const [, tick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 15_000);
    return () => clearInterval(t);
  }, []);
  const people = self ? [self, ...others] : others;
  if (people.length === 0) return <p className="muted">Connecting…</p>;
  const now = Date.now();
  return (
    <ul className="people" aria-label="People in this room">
      {people.map((u) => {
        const where = sectionTitle(u.location);
        const isFollowed = following?.id === u.id;
        return (
          <li key={u.id} className={`people__row people__row--${u.status}`} data-presence-id={u.id}>
            <span className="people__face" aria-hidden="true">
              <UserAvatar user={u} size={24} />
            </span>
            <span className="people__who">
              <span className="people__name">
                {displayName(u)}
                {u.verified ? (
                  <span className="people__verified" title="verified by a token">
                    {" "}
                    ✓
                  </span>
                ) : null}
                {u === self ? <span className="muted"> (you)</span> : null}
              </span>
              <span className="muted people__status">
                {statusText(u, now)}
                {where ? ` · in ${where}` : ""}
              </span>
            </span>
            {u === self ? null : (
              <button
                type="button"
                className={`people__follow ${isFollowed ? "people__follow--on" : ""}`}
                aria-pressed={isFollowed}
                aria-label={isFollowed ? `Stop following ${displayName(u)}` : `Follow ${displayName(u)}`}
                onClick={() => (isFollowed ? stop() : follow(u.id))}
              >
                {isFollowed ? "Following" : "Follow"}
              </button>
            )}
          </li>
        );
      })}
      {recent.map(({ user, leftAt }) => (
        <li key={`left-${user.id}`} className="people__row people__row--left" data-presence-id={user.id}>
          <span className="people__face" aria-hidden="true">
            <UserAvatar user={user} size={24} />
          </span>
          <span className="people__who">
            <span className="people__name">{displayName(user)}</span>
            <span className="muted people__status">left {agoPhrase(now - leftAt)}</span>
          </span>
        </li>
      ))}
    </ul>
  );
}

const STATUS_TEXT = {
  open: "Live",
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  closed: "Offline",
} as const;

function ConnectionBadge() {
  const { status, error, retryAt } = usePresence();
  const [, tick] = useState(0);
  useEffect(() => {
    if (status !== "reconnecting" || retryAt === null) return;
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [status, retryAt]);
  const seconds = retryAt === null ? 0 : Math.ceil((retryAt - Date.now()) / 1000);
  const text = status === "reconnecting" && seconds > 0 ? `Reconnecting in ${seconds}s` : STATUS_TEXT[status];
  const title = error ? `${error.code}: ${error.message}` : undefined;
  return (
    <span className={`status status--${status}`} role="status" data-status={status} title={title}>
      <span className="status__dot" aria-hidden="true" />
      {text}
    </span>
  );
}
