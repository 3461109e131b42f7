/**
 * The sections of a room's page. Each section's id is its DOM id and the location a tab
 * publishes while it is in view, so following someone scrolls to the element of that id.
 * `currentSection` picks the section in view from what an IntersectionObserver reported.
 */

export interface Section {
  id: string;
  title: string;
  body: readonly string[];
}

export const SECTIONS: readonly Section[] = [
  {
    id: "overview",
    title: "Overview",
    body: [
      "What this page is for, in two sentences: who it serves, and what changes for them when we are done.",
      "Everything below is a draft. Comment where you disagree; the faces next to each heading show who is reading it right now.",
    ],
  },
  {
    id: "goals",
    title: "Goals",
    body: [
      "Ship the smallest version that a real team would use every day, then listen.",
      "Keep the page fast on a slow phone: nothing on it may block the first paint.",
      "Measure one thing that matters: how many people come back the next week.",
    ],
  },
  {
    id: "timeline",
    title: "Timeline",
    body: [
      "Week 1: the outline agreed, owners named. Week 2: the first version behind a flag.",
      "Week 3: a beta with three friendly teams. Week 4: the launch, and a quiet week after it to fix what they find.",
    ],
  },
  {
    id: "risks",
    title: "Risks",
    body: [
      "The beta teams may be too friendly to tell us what is wrong: ask one team that owes us nothing.",
      "The launch week collides with the holidays in two of our markets: move it, or staff the support rota twice.",
    ],
  },
  {
    id: "decisions",
    title: "Decisions",
    body: [
      "We keep the old flow for a month after the launch, behind a link, so nobody is stranded.",
      "Pricing does not change with this release; that is a separate page and a separate review.",
    ],
  },
];

/** Where a section is, as an IntersectionObserver entry tells it. */
export interface SectionSighting {
  id: string;
  /** The section crosses the observer's reading band. */
  visible: boolean;
}

/**
 * The section being read: of those crossing the reading band, the first in page order;
 * null when none does (the top of the page, above every section).
 */
export function currentSection(order: readonly string[], visible: ReadonlySet<string>): string | null {
  return order.find((id) => visible.has(id)) ?? null;
}

/** Folds a batch of sightings into the set of sections in the band. */
export function applySightings(visible: ReadonlySet<string>, sightings: readonly SectionSighting[]): Set<string> {
  const next = new Set(visible);
  for (const s of sightings) {
    if (s.visible) next.add(s.id);
    else next.delete(s.id);
  }
  return next;
}
