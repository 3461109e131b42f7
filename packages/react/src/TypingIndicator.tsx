/**
 * `<TypingIndicator>`: "Ada is typing…", "Ada and Linus are typing…", "3 people are
 * typing…". The live region is always rendered, so screen readers announce changes.
 */
import type { PresenceSnapshot, User } from "@herenow/client";
import type { CSSProperties } from "react";
import { useSnapshotIfAny } from "./hooks";
import { typingPhrase } from "./names";

export interface TypingIndicatorProps {
  /** Who is typing; default: the others typing in the nearest `<PresenceProvider>`. */
  users?: readonly User[];
  className?: string;
  style?: CSSProperties;
}

const pickTyping = (s: PresenceSnapshot) => s.typing;
const nobody: readonly User[] = [];

export function TypingIndicator(props: TypingIndicatorProps) {
  const fromProvider = useSnapshotIfAny(pickTyping, nobody);
  const users = props.users ?? fromProvider;
  const phrase = typingPhrase(users);
  return (
    <div
      className={["hn-typing", phrase ? "hn-typing--active" : "", props.className].filter(Boolean).join(" ")}
      style={props.style}
      aria-live="polite"
      aria-atomic="true"
    >
      {phrase ? (
        <>
          <span className="hn-typing__dots" aria-hidden="true">
            <span />
            <span />
            <span />
          </span>
          <span className="hn-typing__text">{phrase}</span>
        </>
      ) : null}
    </div>
  );
}
