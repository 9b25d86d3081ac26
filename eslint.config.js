import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * The layers of src/, lowest first. A module may import from its own folder and from
 * lower layers only; `npm run lint` rejects an import that runs back up (or sideways,
 * between two folders of one layer). docs/architecture.md explains the order.
 */
const LAYERS = [
  ["errors.ts", "logger.ts"],
  // A development PostgreSQL server: depends on nothing of pgbus, so anything above (the
  // CLI's `pgbus dev`, the testing helpers) may use it.
  ["embedded"],
  ["db"],
  ["queue", "schema"],
  ["jobs"],
  ["pools"],
  ["observability"],
  ["worker"],
  ["events"],
  ["bus.ts"],
  // pgbus/testing: helpers over the Pgbus facade for users' tests; nothing imports them.
  ["testing"],
  ["config"],
  ["process"],
  // The dashboard, /metrics and health endpoints: served by the library or by `pgbus web`.
  ["web"],
  ["cli"],
  ["index.ts"],
];

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** no-restricted-imports for the modules of one layer: every relative path into a higher or sibling layer. */
function layerRule(index) {
  const forbidden = LAYERS.flatMap((names, other) => (other > index || (other === index && names.length > 1) ? names : []));
  const own = LAYERS[index];
  return own.map((name) => {
    const targets = forbidden.filter((target) => target !== name).map(escape);
    // From src/<folder>/... imports of other folders start with one or more "../"; from a
    // root file they start with "./".
    const regex = `^(\\./|(\\.\\./)+)(${targets.join("|")})(/|$)`;
    return {
      files: [name.endsWith(".ts") ? `src/${name}` : `src/${name}/**/*.ts`],
      rules: {
        "no-restricted-imports": [
          "error",
          { patterns: [{ regex, message: `${name} may import only from lower layers (see LAYERS in eslint.config.js)` }] },
        ],
      },
    };
  });
}

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  ...LAYERS.flatMap((_, index) => layerRule(index)),
  {
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: { globals: { process: "readonly", console: "readonly", URL: "readonly" } },
  },
);
