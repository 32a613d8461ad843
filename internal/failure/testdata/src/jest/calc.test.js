const add = (a, b) => a + b;

describe('calc', () => {
  test('adds zero', () => { expect(add(0, 0)).toBe(0); });
  test('adds numbers', () => { expect(add(1, 2)).toBe(4); });
});
