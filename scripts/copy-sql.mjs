// tsc does not copy non-TS assets: the SQL migrations ship next to the compiled migrator.
import { cpSync } from "node:fs";

cpSync(new URL("../src/schema/migrations", import.meta.url), new URL("../dist/schema/migrations", import.meta.url), {
  recursive: true,
});
