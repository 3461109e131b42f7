import { describe, expect, it } from "vitest";
import { TAB_ID_STORAGE_KEY, TabIdentity, newTabId, type ChannelLike, type StorageLike } from "../src/identity";

class MemoryStorage implements StorageLike {
  map = new Map<string, string>();
  getItem(key: string) {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.map.set(key, value);
  }
  clone() {
    const copy = new MemoryStorage();
    copy.map = new Map(this.map);
    return copy;
  }
}

/** Same-origin BroadcastChannel: synchronous delivery to every other open channel. */
class Bus {
  channels = new Set<ChannelLike>();
  open = (): ChannelLike => {
    const bus = this;
    const channel: ChannelLike = {
      onmessage: null,
      postMessage(message) {
        for (const other of bus.channels) {
          if (other !== channel) other.onmessage?.({ data: structuredClone(message) });
        }
      },
      close() {
        bus.channels.delete(channel);
      },
    };
    this.channels.add(channel);
    return channel;
  };
}

function counter(seed: number) {
  let x = seed;
  return () => {
    x = (x * 9301 + 49297) % 233280;
    return x / 233280;
  };
}

describe("TabIdentity", () => {
  it("makes 16-character ids of [a-z0-9]", () => {
    expect(newTabId(counter(1))).toMatch(/^[a-z0-9]{16}$/);
  });

  it("keeps its id in sessionStorage, so a reload keeps it", () => {
    const storage = new MemoryStorage();
    const first = new TabIdentity({ storage, random: counter(1) });
    expect(storage.getItem(TAB_ID_STORAGE_KEY)).toBe(first.id);
    const reloaded = new TabIdentity({ storage, random: counter(2) });
    expect(reloaded.id).toBe(first.id);
  });

  it("replaces a stored id that is not a valid tab id", () => {
    const storage = new MemoryStorage();
    storage.setItem(TAB_ID_STORAGE_KEY, "not valid!");
    expect(new TabIdentity({ storage, random: counter(3) }).id).toMatch(/^[a-z0-9]{16}$/);
  });

  it("a duplicated tab notices the shared id and takes a new one; the original keeps it", () => {
    const bus = new Bus();
    const storage = new MemoryStorage();
    let now = 1000;
    const changes: string[] = [];
    const original = new TabIdentity({ storage, channel: bus.open, random: counter(4), now: () => now });
    original.start();
    now = 5000;
    const dupStorage = storage.clone(); // what "Duplicate tab" does
    const duplicate = new TabIdentity({
      storage: dupStorage,
      channel: bus.open,
      random: counter(5),
      now: () => now,
      onChange: (id) => changes.push(id),
    });
    expect(duplicate.id).toBe(original.id);
    duplicate.start();
    expect(duplicate.id).not.toBe(original.id);
    expect(changes).toEqual([duplicate.id]);
    expect(dupStorage.getItem(TAB_ID_STORAGE_KEY)).toBe(duplicate.id);
    expect(storage.getItem(TAB_ID_STORAGE_KEY)).toBe(original.id);
  });

  it("two tabs with different ids leave each other alone", () => {
    const bus = new Bus();
    const a = new TabIdentity({ storage: new MemoryStorage(), channel: bus.open, random: counter(6) });
    const b = new TabIdentity({ storage: new MemoryStorage(), channel: bus.open, random: counter(7) });
    const [idA, idB] = [a.id, b.id];
    a.start();
    b.start();
    expect([a.id, b.id]).toEqual([idA, idB]);
  });

  it("works without storage or channel (ids last for the page)", () => {
    const id = new TabIdentity({ storage: null, channel: null, random: counter(8) });
    id.start();
    expect(id.id).toMatch(/^[a-z0-9]{16}$/);
  });
});
