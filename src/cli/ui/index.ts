/**
 * Progress renderers for the CLI: they consume `SolveStatus` batches (src/progress) and
 * draw them. Commands call `chooseRenderer(flag, { stream: ctx.err, isTTY: ctx.isTTY,
 * env: ctx.env })` and pass the result as the operation's progress sink.
 */
export * from './choose.js';
export * from './format.js';
export * from './plain.js';
export * from './rawjson.js';
export * from './renderer.js';
export * from './summary.js';
export * from './trace.js';
export * from './tty.js';
