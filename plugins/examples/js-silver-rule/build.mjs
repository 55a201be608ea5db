// Turns the bundled module into a component of the `transform` world.
// componentize-js's API rather than `jco componentize`: jco 1.35 fails to
// read the WIT path ("failed to get path metadata ... os error 44").
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';

const { component } = await componentize({
  sourcePath: 'dist/bundle.js',
  witPath: '../../../wit',
  worldName: 'transform',
  // A plugin has no network: keep wasi:http out of the component's imports.
  disableFeatures: ['http', 'fetch-event'],
});
await mkdir('dist', { recursive: true });
await writeFile('dist/js_silver_rule.wasm', component);
console.log(`dist/js_silver_rule.wasm: ${component.length} bytes`);
