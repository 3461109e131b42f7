// The published packages as an app outside this workspace gets them: `npm pack`, then apps
// (e2e/consumers/*) copied to a temporary directory and installed there with `npm ci` from
// their committed lockfiles, which name the fresh tarballs as `file:` dependencies.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO } from "./paths";

export const CONSUMERS = join(REPO, "e2e/consumers");
/** The packages, in build order (@herenow/react's types build reads @herenow/client's). */
export const PACKAGES = ["client", "react"] as const;
export type PackageName = (typeof PACKAGES)[number];

/** Where the consumers' lockfiles expect the tarballs: `file:../packs/herenow-<name>.tgz`. */
export const tarballName = (name: PackageName) => `herenow-${name}.tgz`;

/**
 * Set to regenerate the committed lockfiles: the consumers are installed with `npm install`
 * (with the versions their package.json pins) and their lockfiles copied back.
 */
export const UPDATE_LOCKS = process.env.UPDATE_CONSUMER_LOCKS === "1";

/**
 * The environment for npm and the consumers' tools: ours, minus what the npm that started
 * this test set (`npm_config_workspace` would aim a nested npm at our workspace), with
 * Next.js's telemetry off.
 */
export function toolEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) && k !== "INIT_CWD" && k !== "NODE_ENV") env[k] = v;
  }
  return { ...env, NEXT_TELEMETRY_DISABLED: "1", NO_UPDATE_NOTIFIER: "1", CI: "1", ...extra };
}

/** Runs a command to completion; the error carries the tail of its output. */
export async function run(
  cmd: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<string> {
  try {
    const { stdout, stderr } = await promisify(execFile)(cmd, args, {
      cwd: options.cwd,
      env: options.env ?? toolEnv(),
      timeout: options.timeoutMs ?? 180_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout + stderr;
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string };
    const out = `${err.stdout ?? ""}${err.stderr ?? ""}`.slice(-6000);
    throw new Error(`${cmd} ${args.join(" ")} (in ${options.cwd}) failed: ${err.message}\n${out}`);
  }
}

/** Builds (prepack) and packs both packages into `dir`, under the names the lockfiles use. */
export async function packPackages(dir: string): Promise<Record<PackageName, string>> {
  const workspaces = PACKAGES.flatMap((p) => ["-w", `packages/${p}`]);
  mkdirSync(dir, { recursive: true });
  await run("npm", ["pack", ...workspaces, "--pack-destination", dir], { cwd: REPO });
  const out = {} as Record<PackageName, string>;
  for (const name of PACKAGES) {
    const { version } = JSON.parse(readFileSync(join(REPO, "packages", name, "package.json"), "utf8")) as {
      version: string;
    };
    out[name] = join(dir, tarballName(name));
    renameSync(join(dir, `herenow-${name}-${version}.tgz`), out[name]);
  }
  return out;
}

interface Lockfile {
  packages: Record<string, { resolved?: string; integrity?: string; dependencies?: Record<string, string> }>;
}

/**
 * Drops the integrity of the `file:` tarballs from a lockfile: they are rebuilt by every run,
 * while every package from the registry keeps its pinned version and hash.
 */
function withoutTarballIntegrity(lock: Lockfile): Lockfile {
  for (const entry of Object.values(lock.packages)) {
    if (entry.resolved?.startsWith("file:")) delete entry.integrity;
  }
  return lock;
}

/**
 * Copies consumer `app` into `work/app` and installs it: `npm ci` from its committed
 * lockfile (or `npm install` and the lockfile copied back, with UPDATE_CONSUMER_LOCKS=1).
 * Fails, saying what to run, if a package's dependencies changed since the lockfile.
 */
export async function installConsumer(app: string, work: string): Promise<string> {
  const src = join(CONSUMERS, app);
  const dir = join(work, app);
  cpSync(src, dir, {
    recursive: true,
    filter: (p) => !/[/\\](node_modules|dist|\.next)$/.test(p),
  });
  if (UPDATE_LOCKS) {
    await run("npm", ["install", "--no-audit", "--no-fund"], { cwd: dir, timeoutMs: 400_000 });
    const lock = withoutTarballIntegrity(JSON.parse(readFileSync(join(dir, "package-lock.json"), "utf8")) as Lockfile);
    writeFileSync(join(src, "package-lock.json"), `${JSON.stringify(lock, null, 2)}\n`);
    return dir;
  }
  const lockPath = join(dir, "package-lock.json");
  const lock = withoutTarballIntegrity(JSON.parse(readFileSync(lockPath, "utf8")) as Lockfile);
  writeFileSync(lockPath, JSON.stringify(lock, null, 2));
  for (const name of PACKAGES) {
    const entry = lock.packages[`node_modules/@herenow/${name}`];
    if (!entry) continue;
    const manifest = JSON.parse(readFileSync(join(REPO, "packages", name, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
    };
    const sorted = (deps: Record<string, string> = {}) => JSON.stringify(Object.entries(deps).sort());
    if (sorted(entry.dependencies) !== sorted(manifest.dependencies)) {
      throw new Error(
        `@herenow/${name}'s dependencies changed since e2e/consumers/${app}/package-lock.json was written: ` +
          "run `make consumer-locks` and commit the lockfiles",
      );
    }
  }
  await run("npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir, timeoutMs: 400_000 });
  return dir;
}
