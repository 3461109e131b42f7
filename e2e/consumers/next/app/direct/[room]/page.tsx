// A Server Component using the widget directly: @herenow/react is a client module
// ("use client"), so Next.js renders it on the server with an empty room, then hydrates it.
import { AvatarStack, PresenceProvider } from "@herenow/react";

interface Props {
  params: Promise<{ room: string }>;
  searchParams: Promise<{ name?: string }>;
}

export default async function DirectPage({ params, searchParams }: Props) {
  const { room } = await params;
  const { name = "Guest" } = await searchParams;
  return (
    <main>
      <h1>{room}</h1>
      <PresenceProvider room={room} url={process.env.HERENOW_URL ?? "http://127.0.0.1:3000"} user={{ name }}>
        <AvatarStack max={5} />
      </PresenceProvider>
    </main>
  );
}
