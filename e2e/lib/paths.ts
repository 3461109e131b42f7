import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = join(REPO, "test-artifacts");
export const DEMO_DIST = join(REPO, "apps/demo/dist");

/** The herenow binary: $HERENOW_BIN, else the debug build. */
export function herenowBin(): string {
  // A relative HERENOW_BIN is relative to where npm was started (npm runs us in e2e/).
  const given = process.env.HERENOW_BIN;
  const bin = given ? resolve(process.env.INIT_CWD ?? process.cwd(), given) : join(REPO, "target/debug/herenow");
  if (!existsSync(bin)) {
    throw new Error(
      `no herenow binary at ${bin}: run \`cargo build -p herenow\` or set HERENOW_BIN (make test-e2e does both)`,
    );
  }
  return bin;
}

/** The built demo, which herenow serves unless a test gives it a STATIC_DIR of its own. */
export function demoDist(): string {
  if (!existsSync(join(DEMO_DIST, "index.html"))) {
    throw new Error(`the demo is not built (${DEMO_DIST}): run \`npm run build\` (make test-e2e does)`);
  }
  return DEMO_DIST;
}
