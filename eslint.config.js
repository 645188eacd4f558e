// ESLint flat config: @eslint/js recommended + typescript-eslint recommended, syntax-only (no
// type information) so `npm run lint` stays fast; `tsc --noEmit` does the type checking.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

// The Node globals plain .js files use (TypeScript files get no-undef turned off by
// typescript-eslint, since tsc checks names itself). Listed here to avoid a `globals` dependency.
const nodeGlobals = Object.fromEntries(
  ['process', 'console', 'Buffer', 'URL', 'URLSearchParams', 'fetch', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'structuredClone', 'performance'].map(
    (name) => [name, 'readonly'],
  ),
);

export default defineConfig(
  { ignores: ['node_modules/', 'data/', 'coverage/', '.scratch/'] },
  {
    files: ['{src,test,migrations,bin,bench,scripts}/**/*.{ts,js}', '*.js'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: {
      ecmaVersion: 'latest',
      sourceType: 'module',
      globals: nodeGlobals,
    },
    rules: {
      // Style: `let { step, verifier } = …` where only `step` is reassigned is fine; flag a
      // destructuring only when every name in it could be const.
      'prefer-const': ['error', { destructuring: 'all' }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
    },
  },
);
