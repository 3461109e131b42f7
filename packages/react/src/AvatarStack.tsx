/**
 * `<AvatarStack>`: the faces at the top of the page.
 *
 * Yourself first, with a ring and a little gap; then the others as overlapping round faces,
 * newest on the left and on top; then a `+N` chip for the oldest when there are more than
 * `max`. Every face and the chip can be
 * hovered or focused for a tooltip; the stack's accessible name says who is here
 * ("3 people here: Ada, Linus and you"). Styles: `@herenow/react/styles.css`, themable
 * through CSS custom properties (`--hn-size`, `--hn-ring`, ...).
 */
import type { PresenceSnapshot, User } from "@herenow/client";
import Avatar from "boring-avatars";
import { useId, useMemo, useState, type CSSProperties, type ReactNode } from "react";
import { useSnapshotIfAny } from "./hooks";
import { useExitTransition, usePrefersReducedMotion } from "./motion";
import { displayName, isAway, joinNames, stackLabel } from "./names";

/** Colors of the generated faces when a user gives no avatar URL. */
export const DEFAULT_PALETTE = ["#f4a261", "#e76f51", "#2a9d8f", "#264653", "#e9c46a"];
/** Length of the exit animation in the stylesheet. */
export const EXIT_MS = 180;

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
  /** The people to show; default: the room of the nearest `<PresenceProvider>`. */
  users?: readonly User[];
  /** Which of `users` is you; default: from the provider. */
  selfId?: string | null;
  className?: string;
  style?: CSSProperties;
}

const pickRoster = (s: PresenceSnapshot) => ({ users: s.users, self: s.self?.id ?? null });
const noRoster = { users: [] as readonly User[], self: null as string | null };

export function AvatarStack(props: AvatarStackProps) {
  const { max = 5, size = 36, palette = DEFAULT_PALETTE, variant = "beam", showSelf = true } = props;
  const roster = useSnapshotIfAny(pickRoster, noRoster);
  const users = props.users ?? roster.users;
  const selfId = props.selfId !== undefined ? props.selfId : roster.self;
  const tooltipId = useId();
  const [active, setActive] = useState<string | null>(null);
  const reducedMotion = usePrefersReducedMotion();

  const { visible, hidden, everyone } = useMemo(() => {
    const self = users.find((u) => u.id === selfId);
    // Newest first: the latest arrival is the leftmost face, drawn on top.
    const others = users.filter((u) => u.id !== selfId).sort((a, b) => b.since - a.since || (a.id < b.id ? -1 : 1));
    const withSelf = showSelf && self;
    const total = others.length + (withSelf ? 1 : 0);
    // You always stay visible; the oldest others go behind the chip.
    const shownOthers = total > max ? others.slice(0, Math.max(0, max - (withSelf ? 1 : 0))) : others;
    return {
      visible: withSelf ? [self, ...shownOthers] : shownOthers,
      hidden: others.slice(shownOthers.length),
      // In screen order, so the label reads like the faces look.
      everyone: withSelf ? [...others, self] : others,
    };
  }, [users, selfId, max, showSelf]);

  const faces = useExitTransition(visible, reducedMotion ? 0 : EXIT_MS);
  const label = stackLabel(everyone, showSelf ? selfId : null);
  const chipKey = "+chip";

  const tooltip = (key: string, content: ReactNode) =>
    active === key ? (
      <span role="tooltip" id={tooltipId} className="hn-tooltip">
        {content}
      </span>
    ) : null;

  const focusable = (key: string) => ({
    tabIndex: 0,
    onMouseEnter: () => setActive(key),
    onMouseLeave: () => setActive((k) => (k === key ? null : k)),
    onFocus: () => setActive(key),
    onBlur: () => setActive((k) => (k === key ? null : k)),
    onKeyDown: (e: { key: string }) => e.key === "Escape" && setActive(null),
    "aria-describedby": active === key ? tooltipId : undefined,
  });

  return (
    <div
      role="group"
      aria-label={label}
      className={["hn-stack", props.className].filter(Boolean).join(" ")}
      style={{ "--hn-size": `${size}px`, ...props.style } as CSSProperties}
    >
      {faces.map(({ item: user, leaving }, index) => {
        const self = user.id === selfId;
        const away = isAway(user);
        const name = displayName(user);
        const classes = ["hn-face", self && "hn-face--self", away && "hn-face--away", leaving && "hn-face--leaving"];
        return (
          <span
            key={user.id}
            role="img"
            aria-label={self ? `${name} (you)` : away ? `${name} (away)` : name}
            aria-hidden={leaving || undefined}
            data-presence-id={user.id}
            className={classes.filter(Boolean).join(" ")}
            style={
              {
                zIndex: faces.length - index + 1,
                ...(user.color ? { "--hn-user-color": user.color } : {}),
              } as CSSProperties
            }
            {...(leaving ? {} : focusable(user.id))}
          >
            <UserAvatar user={user} size={size} palette={palette} variant={variant} />
            {tooltip(
              user.id,
              <>
                <span className="hn-tooltip__name">{name}</span>
                {self ? <span className="hn-tooltip__meta"> · you</span> : null}
                {away ? <span className="hn-tooltip__meta"> · away</span> : null}
                {user.tabs > 1 ? <span className="hn-tooltip__meta"> · {user.tabs} tabs</span> : null}
              </>,
            )}
          </span>
        );
      })}
      {hidden.length > 0 ? (
        <span
          role="img"
          aria-label={`${hidden.length} more: ${joinNames(hidden.map(displayName))}`}
          className="hn-chip"
          style={{ zIndex: faces.length + 2 }} // over its neighbour: the count stays readable
          {...focusable(chipKey)}
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
    </div>
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
