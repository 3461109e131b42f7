// The same scenario with two herenow instances sharing one Redis: Ada and Grace on
// instance A, Linus on instance B. Each run starts its own redis-server on a free
// loopback port, without persistence.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect } from "vitest";
import { startHerenow, startRedis, type Herenow, type Redis } from "./lib/process";
import { presenceScenario } from "./lib/scenario";

let redis: Redis | undefined;
const servers: Herenow[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
  await redis?.stop();
});

describe("two herenow instances sharing one Redis", () => {
  presenceScenario(async () => {
    redis = await startRedis();
    for (let i = 0; i < 2; i++) servers.push(await startHerenow({ REDIS_URL: redis.url }));
    const [a, b] = servers as [Herenow, Herenow];
    expect(a.url).not.toBe(b.url);
    // Both must really serve from Redis (their `serving` log line names the store), or
    // this would pass on two unrelated memory stores only by never comparing them.
    for (const s of servers) {
      for (let i = 0; i < 40 && s.store() === null; i++) await sleep(50);
      expect(s.store()).toBe("redis");
    }
    return { baseA: a.url, baseB: b.url };
  });
});
