/**
 * `<ActivityLog>`: who came and went, newest first. The client derives the entries from
 * diffs only, so arriving in a room never lists everyone already there as "joined".
 */
import type { ActivityEntry, PresenceSnapshot } from "@herenow/client";
import type { CSSProperties } from "react";
import { useSnapshotIfAny } from "./hooks";
import { displayName } from "./names";

export interface ActivityLogProps {
  /** Entries shown at most. Default 8. */
  max?: number;
  /** The entries; default: the nearest `<PresenceProvider>`'s. */
  entries?: readonly ActivityEntry[];
  /** Shown when there is nothing yet. */
  emptyText?: string;
  /** How a time is written; default: hours and minutes in the user's locale. */
  formatTime?: (ms: number) => string;
  className?: string;
  style?: CSSProperties;
}

const pickActivity = (s: PresenceSnapshot) => s.activity;
const none: readonly ActivityEntry[] = [];

function defaultTime(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function ActivityLog(props: ActivityLogProps) {
  const { max = 8, emptyText = "Nobody has come or gone yet.", formatTime = defaultTime } = props;
  const fromProvider = useSnapshotIfAny(pickActivity, none);
  const entries = (props.entries ?? fromProvider).slice(0, max);
  const className = ["hn-activity", props.className].filter(Boolean).join(" ");
  if (entries.length === 0) {
    return (
      <p className={`${className} hn-activity--empty`} style={props.style}>
        {emptyText}
      </p>
    );
  }
  return (
    <ol className={className} style={props.style} aria-label="Recent activity">
      {entries.map((e) => (
        <li key={e.seq} className={`hn-activity__item hn-activity__item--${e.kind}`} data-kind={e.kind}>
          <span className="hn-activity__dot" aria-hidden="true" />
          <span className="hn-activity__text">
            <strong>{displayName(e.user)}</strong> {e.kind === "joined" ? "joined" : "left"}
          </span>
          <time className="hn-activity__time" dateTime={new Date(e.at).toISOString()}>
            {formatTime(e.at)}
          </time>
        </li>
      ))}
    </ol>
  );
}
