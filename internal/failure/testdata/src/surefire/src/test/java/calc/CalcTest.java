package calc;

import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class CalcTest {
    static int add(int a, int b) { return a + b; }

    @Test
    public void addsZero() { assertEquals(0, add(0, 0)); }

    @Test
    public void addsNumbers() { assertEquals(4, add(1, 2)); }
}
