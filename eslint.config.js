// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "dist/**",
      "node_modules/**",
      "coverage/**",
      "test/fixtures/**",
      "test/bench/.build/**",
      "eslint.config.js",
      "scripts/**",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/switch-exhaustiveness-check": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/only-throw-error": "error",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      "@typescript-eslint/ban-ts-comment": ["error", { "ts-expect-error": "allow-with-description" }],
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
  },
  {
    // Drivers may import only the driver contract, src/core and src/syncml (style.md 2.1).
    files: ["drivers/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: [
                "../../src/*",
                "!../../src/core",
                "!../../src/syncml",
                "../../src/*/**",
                "!../../src/core/**",
                "!../../src/syncml/**",
              ],
              message: "drivers import only drivers/driver.ts, src/core and src/syncml",
            },
          ],
        },
      ],
    },
  },
  {
    // Device simulators (drivers/<kind>/sim.ts) are DM clients: they build on src/sim, src/dm and
    // src/tree, which the drivers themselves must not import.
    files: ["drivers/**/sim.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: [
                "../../src/*",
                "!../../src/core",
                "!../../src/syncml",
                "!../../src/sim",
                "!../../src/dm",
                "!../../src/tree",
                "../../src/*/**",
                "!../../src/core/**",
                "!../../src/syncml/**",
                "!../../src/sim/**",
                "!../../src/dm/**",
                "!../../src/tree/**",
              ],
              message:
                "device simulators import only drivers/, src/core, src/syncml, src/sim, src/dm and src/tree",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["test/**/*.ts"],
    rules: {
      // mocha's describe/it return values are not promises to await.
      "@typescript-eslint/no-floating-promises": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
);
