// A Server Component: it reads the room and the server's address on the server and renders
// the client component that holds the presence.
import { RoomPresence } from "../../room-presence.js";

interface Props {
  params: Promise<{ room: string }>;
  searchParams: Promise<{ name?: string }>;
}

export default async function RoomPage({ params, searchParams }: Props) {
  const { room } = await params;
  const { name = "Guest" } = await searchParams;
  const server = process.env.HERENOW_URL ?? "http://127.0.0.1:3000";
  return (
    <main>
      <h1>{room}</h1>
      <RoomPresence room={room} name={name} server={server} />
    </main>
  );
}
