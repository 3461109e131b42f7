import { describe, expect, it } from "vitest";
import { SECTIONS, applySightings, currentSection } from "./sections";
import { timingsFrom } from "./settings";

const order = SECTIONS.map((s) => s.id);

describe("sections", () => {
  it("have unique ids that are valid DOM ids and short locations", () => {
    expect(new Set(order).size).toBe(order.length);
    for (const id of order) expect(id).toMatch(/^[a-z][a-z0-9-]{0,40}$/);
  });

  it("the section read is the first in page order crossing the band; none above them", () => {
    let visible = applySightings(new Set(), [
      { id: "timeline", visible: true },
      { id: "goals", visible: true },
    ]);
    expect(currentSection(order, visible)).toBe("goals");
    visible = applySightings(visible, [{ id: "goals", visible: false }]);
    expect(currentSection(order, visible)).toBe("timeline");
    visible = applySightings(visible, [{ id: "timeline", visible: false }]);
    expect(currentSection(order, visible)).toBeNull();
  });
});

describe("timings from the address", () => {
  it("takes positive whole milliseconds and ignores the rest", () => {
    expect(timingsFrom("?recentMs=3000&idleAfterMs=500&awayAfterMs=2000")).toEqual({
      recentMs: 3000,
      idleAfterMs: 500,
      awayAfterMs: 2000,
    });
    expect(timingsFrom("?recentMs=-1&idleAfterMs=1.5&awayAfterMs=abc")).toEqual({});
    expect(timingsFrom("?recentMs=0")).toEqual({});
    expect(timingsFrom("?recentMs=99999999999")).toEqual({});
    expect(timingsFrom("")).toEqual({});
  });

  it("drops an away that would come before idle", () => {
    expect(timingsFrom("?idleAfterMs=5000&awayAfterMs=1000&recentMs=7")).toEqual({ recentMs: 7 });
  });
});
