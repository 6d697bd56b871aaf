// sdk.mjs: loads the official OpenAI Node SDK that tests/sdk/install put in
// tests/sdk/node_modules (the version pinned in package-lock.json), for
// parse_sse.mjs and sdk_stream.mjs.
//
// When the SDK is not installed the scripts cannot be an oracle: they print
// why and exit 77 (SKIP_EXIT), which the C tests turn into a skip, except
// under CI=true, where they exit 1 (CI must run them; scripts/setup fails
// there first when it cannot install the SDK).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SKIP_EXIT = 77;

// The version in node_modules/openai/package.json, or null.
function installedVersion() {
  try {
    const url = new URL('./node_modules/openai/package.json', import.meta.url);
    return JSON.parse(readFileSync(fileURLToPath(url), 'utf8')).version;
  } catch {
    return null;
  }
}

// { OpenAI, Stream, version }: the client class, the SSE stream class the
// client uses for `stream: true` (openai/streaming), and the version.
export async function loadSdk(who) {
  let OpenAI, Stream;
  try {
    ({ default: OpenAI } = await import('openai'));
    ({ Stream } = await import('openai/streaming'));
  } catch (e) {
    const why = `${who}: the OpenAI SDK is not installed in tests/sdk/node_modules ` +
      `(${e.code || e.message}); tests/sdk/install (run by scripts/setup --sdk) installs it`;
    if (process.env.CI === 'true') {
      process.stderr.write(`${why}\nCI=true: the SDK tests must run in CI, so this is a failure\n`);
      process.exit(1);
    }
    process.stderr.write(`SKIP: ${why}\n`);
    process.exit(SKIP_EXIT);
  }
  if (typeof OpenAI !== 'function' || typeof Stream?.fromSSEResponse !== 'function') {
    process.stderr.write(`${who}: the installed openai package has no OpenAI client or Stream.fromSSEResponse\n`);
    process.exit(1);
  }
  return { OpenAI, Stream, version: installedVersion() };
}
