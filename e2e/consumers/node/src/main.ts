// Joins a herenow room from Node, waits until the room holds as many people as asked, prints
// their names in join order and leaves.
//   HERENOW_URL=http://127.0.0.1:3000 node dist/main.js <room> <name> <people>
import { PresenceClient, type SocketConstructor } from "@herenow/client";
import WebSocket from "ws";

const [room = "lobby", name = "Node", people = "1"] = process.argv.slice(2);

const client = new PresenceClient({
  room,
  url: process.env.HERENOW_URL ?? "http://127.0.0.1:3000",
  tabId: `node-${process.pid}`, // Node has no sessionStorage: give each process its own id
  user: { name },
  WebSocket: WebSocket as unknown as SocketConstructor,
});

const timer = setTimeout(() => {
  const { status, users } = client.getSnapshot();
  console.error(`timed out: ${status}, ${users.length} of ${people} people`);
  process.exit(1);
}, 10_000);

const stop = client.subscribe(() => {
  const { status, users } = client.getSnapshot();
  if (status !== "open" || users.length < Number(people)) return;
  console.log(users.map((u) => u.name).join(","));
  stop();
  clearTimeout(timer);
  client.disconnect();
});
client.connect();
