import { AvatarStack, PresenceProvider, useStatus } from "@herenow/react";
import "@herenow/react/styles.css";

function Status() {
  const status = useStatus();
  return <p data-status={status}>{status}</p>;
}

// The app is served by herenow itself (STATIC_DIR), so the client's default server is the
// page's own origin; pass `url` to the provider to use another one.
export function App({ room, name }: { room: string; name: string }) {
  return (
    <PresenceProvider room={room} user={{ name }}>
      <AvatarStack max={5} />
      <Status />
    </PresenceProvider>
  );
}
