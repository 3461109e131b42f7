"use client";
import { AvatarStack, PresenceProvider, useStatus } from "@herenow/react";

function Status() {
  const status = useStatus();
  return <p data-status={status}>{status}</p>;
}

export function RoomPresence({ room, name, server }: { room: string; name: string; server: string }) {
  return (
    <PresenceProvider room={room} url={server} user={{ name }}>
      <AvatarStack max={5} />
      <Status />
    </PresenceProvider>
  );
}
