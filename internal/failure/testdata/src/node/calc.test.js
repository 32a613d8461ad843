const test = require('node:test');
const assert = require('node:assert');

const add = (a, b) => a + b;

test('adds zero', () => { assert.strictEqual(add(0, 0), 0); });
test('adds numbers', () => { assert.strictEqual(add(1, 2), 4); });
