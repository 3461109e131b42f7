/**
 * `<AvatarStack>`: the faces at the top of the page, or of one section of it.
 *
 * Yourself first, with a ring and a little gap; then the others as overlapping round faces,
 * newest on the left and on top; then a `+N` chip for the oldest when there are more than
 * `max`. Idle faces are dimmed, away faces carry a badge, and people who just left stay
 * greyed for a while ("left 2 min ago") in whatever room is left before the chip. Every
 * face and the chip can be hovered or focused for a tooltip; clicking someone else's face
 * offers to follow them. The stack's accessible name counts who is here ("3 people here:
 * Ada, Linus and you"), each face's says how they are ("Ada, away"; "Linus, left 1 minute
 * ago"). With `location`, only the people at that location are shown. Styles:
 * `@herenow/react/styles.css`, themable through CSS custom properties (`--hn-size`, ...).
 */
import type { PresenceSnapshot, RecentUser, User } from "@herenow/client";
import Avatar from "boring-avatars";
import {
  useContext,
  useEffect,
  useId,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type CSSProperties,
  type ReactNode,
} from "react";
import { FollowContext } from "./context";
import type { FollowState } from "./follow";
import { useSnapshotIfAny } from "./hooks";
import { useExitTransition, usePrefersReducedMotion } from "./motion";
import { agoPhrase, displayName, durationPhrase, faceLabel, joinNames, stackLabel } from "./names";

/** Colors of the generated faces when a user gives no avatar URL. */
export const DEFAULT_PALETTE = ["#f4a261", "#e76f51", "#2a9d8f", "#264653", "#e9c46a"];
/** Length of the exit animation in the stylesheet. */
export const EXIT_MS = 180;
/** While "left 2 min ago" or a status duration is on screen, it is redrawn this often. */
export const RELATIVE_TIME_REFRESH_MS = 15_000;

type Variant = "beam" | "marble" | "pixel" | "sunset" | "ring" | "bauhaus";

export interface AvatarStackProps {
  /** Faces shown before the `+N` chip (yourself included). Default 5. */
  max?: number;
  /** Face diameter in px. Default 36. */
  size?: number;
  /** Palette of the generated faces. */
  palette?: readonly string[];
  /** Style of the generated faces (boring-avatars variant). Default "beam". */
  variant?: Variant;
  /** Show yourself in the stack (with a ring). Default true. */
  showSelf?: boolean;
  /** Only the people whose location is this one (a section id...); default everyone. */
  location?: string;
  /** Show who left recently, greyed, in the room left before the chip. Default true. */
  showRecent?: boolean;
  /** The people to show; default: the room of the nearest `<PresenceProvider>`. */
  users?: readonly User[];
  /** Who left recently; default: from the provider. */
  recent?: readonly RecentUser[];
  /** Which of `users` is you; default: from the provider. */
  selfId?: string | null;
  className?: string;
  style?: CSSProperties;
}

const pickRoster = (s: PresenceSnapshot) => ({ users: s.users, self: s.self?.id ?? null, recent: s.recent });
const noRoster = {
  users: [] as readonly User[],
  self: null as string | null,
  recent: [] as readonly RecentUser[],
};
const notFollowing: FollowState = Object.freeze({ user: null });
const noSubscribe = () => () => {};

/** One face on screen: someone here, or someone who left at `leftAt`. */
interface Face {
  id: string;
  user: User;
  leftAt?: number;
}

/** Re-renders every `ms` while `active`, for phrases relative to now. */
function useTick(active: boolean, ms: number): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => setTick((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [active, ms]);
}

export function AvatarStack(props: AvatarStackProps) {
  const { max = 5, size = 36, palette = DEFAULT_PALETTE, variant = "beam", showSelf = true } = props;
  const { location, showRecent = true } = props;
  const roster = useSnapshotIfAny(pickRoster, noRoster);
  const all = props.users ?? roster.users;
  const allRecent = props.recent ?? roster.recent;
  const selfId = props.selfId !== undefined ? props.selfId : roster.self;
  const follower = useContext(FollowContext);
  const followed = useSyncExternalStore(
    follower ? follower.subscribe : noSubscribe,
    follower ? follower.getSnapshot : () => notFollowing,
    () => notFollowing,
  ).user;
  const tooltipId = useId();
  const menuId = useId();
  const [active, setActive] = useState<string | null>(null);
  const [menu, setMenu] = useState<{ id: string; left: number } | null>(null);
  const stackRef = useRef<HTMLDivElement>(null);
  const reducedMotion = usePrefersReducedMotion();

  const { shown, hidden, everyone } = useMemo(() => {
    const users = location === undefined ? all : all.filter((u) => u.location === location);
    const self = users.find((u) => u.id === selfId);
    // Newest first: the latest arrival is the leftmost face, drawn on top.
    const others = users.filter((u) => u.id !== selfId).sort((a, b) => b.since - a.since || (a.id < b.id ? -1 : 1));
    const withSelf = showSelf && self;
    const total = others.length + (withSelf ? 1 : 0);
    // You always stay visible; the oldest others go behind the chip.
    const shownOthers = total > max ? others.slice(0, Math.max(0, max - (withSelf ? 1 : 0))) : others;
    const here: Face[] = (withSelf ? [self, ...shownOthers] : shownOthers).map((user) => ({ id: user.id, user }));
    // Who left only takes room nobody here needs: the chip counts people here.
    const present = new Set(all.map((u) => u.id));
    const spare = total > max ? 0 : max - here.length;
    const gone: Face[] = showRecent
      ? allRecent
          .filter((r) => r.user.id !== selfId && !present.has(r.user.id))
          .filter((r) => location === undefined || r.user.location === location)
          .slice(0, spare)
          .map((r) => ({ id: r.user.id, user: r.user, leftAt: r.leftAt }))
      : [];
    return {
      shown: [...here, ...gone],
      hidden: others.slice(shownOthers.length),
      // In screen order, so the label reads like the faces look.
      everyone: withSelf ? [...others, self] : others,
    };
  }, [all, allRecent, location, selfId, max, showSelf, showRecent]);

  const faces = useExitTransition(shown, reducedMotion ? 0 : EXIT_MS);
  const label = stackLabel(everyone, showSelf ? selfId : null);
  const chipKey = "+chip";
  const timed = shown.some((f) => f.leftAt !== undefined) || active !== null;
  useTick(timed, RELATIVE_TIME_REFRESH_MS);
  const now = Date.now();

  // The menu closes when its face goes, on a press elsewhere, and on Escape.
  const menuOpenFor = menu && shown.some((f) => f.id === menu.id && f.leftAt === undefined) ? menu : null;
  useEffect(() => {
    if (!menuOpenFor) return;
    const stack = stackRef.current;
    stack?.querySelector<HTMLElement>(".hn-menu [role=menuitem]")?.focus();
    const onDown = (e: PointerEvent) => {
      if (!stack?.contains(e.target as Node)) setMenu(null);
    };
    document.addEventListener("pointerdown", onDown, true);
    return () => document.removeEventListener("pointerdown", onDown, true);
  }, [menuOpenFor]);

  const closeMenu = (focusFace: boolean) => {
    const id = menu?.id;
    setMenu(null);
    if (focusFace && id) {
      const faces = stackRef.current?.querySelectorAll<HTMLElement>("[data-presence-id]") ?? [];
      [...faces].find((f) => f.dataset.presenceId === id)?.focus();
    }
  };

  const tooltip = (key: string, content: ReactNode) =>
    active === key && menuOpenFor?.id !== key ? (
      <span role="tooltip" id={tooltipId} className="hn-tooltip">
        {content}
      </span>
    ) : null;

  const hoverable = (key: string) => ({
    onMouseEnter: () => setActive(key),
    onMouseLeave: () => setActive((k) => (k === key ? null : k)),
    onFocus: () => setActive(key),
    onBlur: () => setActive((k) => (k === key ? null : k)),
    onKeyDown: (e: { key: string }) => e.key === "Escape" && setActive(null),
    "aria-describedby": active === key && menuOpenFor?.id !== key ? tooltipId : undefined,
  });

  return (
    <div
      ref={stackRef}
      role="group"
      aria-label={label}
      className={["hn-stack", props.className].filter(Boolean).join(" ")}
      style={{ "--hn-size": `${size}px`, ...props.style } as CSSProperties}
      data-location={location}
    >
      {faces.map(({ item: face, leaving }, index) => {
        const { user, leftAt } = face;
        const self = user.id === selfId;
        const gone = leftAt !== undefined;
        const status = gone ? "left" : user.status;
        const isFollowed = !gone && followed?.id === user.id;
        const canFollow = follower !== null && !self && !gone && !leaving;
        const classes = [
          "hn-face",
          self && "hn-face--self",
          status === "idle" && "hn-face--idle",
          status === "away" && "hn-face--away",
          gone && "hn-face--left",
          isFollowed && "hn-face--followed",
          leaving && "hn-face--leaving",
        ];
        const common = {
          "aria-label": faceLabel(user, gone ? { self, leftAt, now } : { self }),
          "aria-hidden": leaving || undefined,
          "data-presence-id": user.id,
          "data-status": status,
          className: classes.filter(Boolean).join(" "),
          style: {
            zIndex: faces.length - index + 1,
            ...(user.color ? { "--hn-user-color": user.color } : {}),
          } as CSSProperties,
          ...(leaving ? {} : hoverable(user.id)),
        };
        const content = (
          <>
            <UserAvatar user={user} size={size} palette={palette} variant={variant} />
            {status === "away" ? <span className="hn-face__badge" aria-hidden="true" /> : null}
            {tooltip(user.id, <FaceTip user={user} self={self} leftAt={leftAt} now={now} followed={isFollowed} />)}
          </>
        );
        if (!canFollow) {
          return (
            <span key={user.id} role="img" tabIndex={leaving ? undefined : 0} {...common}>
              {content}
            </span>
          );
        }
        const open = menuOpenFor?.id === user.id;
        return (
          <button
            key={user.id}
            type="button"
            aria-haspopup="menu"
            aria-expanded={open}
            aria-controls={open ? menuId : undefined}
            {...common}
            onClick={(e) => {
              const el = e.currentTarget;
              setActive(null);
              setMenu(open ? null : { id: user.id, left: el.offsetLeft + el.offsetWidth / 2 });
            }}
          >
            {content}
          </button>
        );
      })}
      {hidden.length > 0 ? (
        <span
          role="img"
          tabIndex={0}
          aria-label={`${hidden.length} more: ${joinNames(hidden.map(displayName))}`}
          className="hn-chip"
          style={{ zIndex: faces.length + 2 }} // over its neighbour: the count stays readable
          {...hoverable(chipKey)}
        >
          +{hidden.length}
          {tooltip(
            chipKey,
            <ul className="hn-tooltip__list">
              {hidden.map((u) => (
                <li key={u.id}>{displayName(u)}</li>
              ))}
            </ul>,
          )}
        </span>
      ) : null}
      {menuOpenFor && follower ? (
        <FaceMenu
          id={menuId}
          user={shown.find((f) => f.id === menuOpenFor.id)!.user}
          left={menuOpenFor.left}
          following={followed?.id === menuOpenFor.id}
          onFollow={(id) => {
            follower.follow(id);
            closeMenu(true);
          }}
          onStop={() => {
            follower.stop();
            closeMenu(true);
          }}
          onClose={() => closeMenu(true)}
        />
      ) : null}
    </div>
  );
}

function FaceTip(props: { user: User; self: boolean; leftAt: number | undefined; now: number; followed: boolean }) {
  const { user, self, leftAt, now, followed } = props;
  const meta: string[] = [];
  if (self) meta.push("you");
  if (leftAt !== undefined) {
    meta.push(`left ${agoPhrase(now - leftAt, true)}`);
  } else {
    if (user.status !== "active") {
      // No duration from a clock that makes no sense (none given, or ahead of ours).
      const held = user.statusSince > 0 ? durationPhrase(now - user.statusSince) : "";
      meta.push(held ? `${user.status} ${held}` : user.status);
    }
    if (user.tabs > 1) meta.push(`${user.tabs} tabs`);
    if (followed) meta.push("following");
  }
  return (
    <>
      <span className="hn-tooltip__name">{displayName(user)}</span>
      {meta.map((m) => (
        <span key={m} className="hn-tooltip__meta">
          {" "}
          · {m}
        </span>
      ))}
    </>
  );
}

function FaceMenu(props: {
  id: string;
  user: User;
  left: number;
  following: boolean;
  onFollow: (id: string) => void;
  onStop: () => void;
  onClose: () => void;
}) {
  const name = displayName(props.user);
  return (
    <span
      id={props.id}
      role="menu"
      aria-label={name}
      className="hn-menu"
      style={{ left: props.left }}
      onKeyDown={(e) => {
        if (e.key === "Escape" || e.key === "Tab") {
          e.stopPropagation();
          props.onClose();
        }
      }}
    >
      <button
        type="button"
        role="menuitem"
        className="hn-menu__item"
        onClick={() => (props.following ? props.onStop() : props.onFollow(props.user.id))}
      >
        {props.following ? `Stop following ${name}` : `Follow ${name}`}
      </button>
    </span>
  );
}

export interface UserAvatarProps {
  user: User;
  /** Diameter in px. Default 24. */
  size?: number;
  palette?: readonly string[];
  variant?: Variant;
}

/**
 * One round face: the avatar URL when given (a generated face if it fails to load), else a
 * face generated from the user's id, the same one `<AvatarStack>` shows.
 */
export function UserAvatar(props: UserAvatarProps) {
  const { user, size = 24, palette = DEFAULT_PALETTE, variant = "beam" } = props;
  const [broken, setBroken] = useState<string | null>(null);
  if (user.avatar && broken !== user.avatar) {
    return (
      <img
        className="hn-face__img"
        src={user.avatar}
        alt=""
        width={size}
        height={size}
        draggable={false}
        onError={() => setBroken(user.avatar ?? null)}
      />
    );
  }
  // Seeded by id, not name: renaming yourself keeps your face.
  return <Avatar name={user.id} size={size} variant={variant} colors={[...palette]} title={false} />;
}
