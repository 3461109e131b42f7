/**
 * `<FollowBanner>`: while you follow someone, a frame in their color around the whole
 * window and a bar at the top that says whom ("Following Ada") with a one-click
 * "Stop following". `<PresenceProvider>` renders one unless told not to
 * (`followBanner={false}`), so following can never happen without a way out.
 */
import { useContext, useSyncExternalStore, type CSSProperties } from "react";
import { createPortal } from "react-dom";
import { FollowContext } from "./context";
import type { FollowState } from "./follow";
import { displayName } from "./names";

export interface FollowBannerProps {
  className?: string;
  style?: CSSProperties;
}

const nobody: FollowState = Object.freeze({ user: null });
const noSubscribe = () => () => {};

export function FollowBanner(props: FollowBannerProps) {
  const follower = useContext(FollowContext);
  const { user } = useSyncExternalStore(
    follower ? follower.subscribe : noSubscribe,
    follower ? follower.getSnapshot : () => nobody,
    () => nobody,
  );
  if (!follower || !user || typeof document === "undefined") return null;
  const name = displayName(user);
  const color = user.color ? ({ "--hn-user-color": user.color } as CSSProperties) : {};
  // On <body>: a `transform` or `backdrop-filter` on an ancestor would otherwise pin the
  // fixed frame to that ancestor instead of the window.
  return createPortal(
    <div
      className={["hn-follow", props.className].filter(Boolean).join(" ")}
      style={{ ...color, ...props.style }}
      data-following={user.id}
    >
      <div className="hn-follow__frame" aria-hidden="true" />
      <div className="hn-follow__bar" role="status">
        <span className="hn-follow__dot" aria-hidden="true" />
        <span className="hn-follow__text">
          Following <strong>{name}</strong>
        </span>
        <button type="button" className="hn-follow__stop" onClick={() => follower.stop()}>
          Stop following
        </button>
      </div>
    </div>,
    document.body,
  );
}
