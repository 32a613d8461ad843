const assert = require('node:assert');

const add = (a, b) => a + b;

describe('calc', () => {
  it('adds zero', () => { assert.strictEqual(add(0, 0), 0); });
  it('adds numbers', () => { assert.strictEqual(add(1, 2), 4); });
});
