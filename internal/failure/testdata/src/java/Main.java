public class Main {
    static int add(int a, int b) { return a + b; }

    public static void main(String[] args) {
        assert add(1, 2) == 4 : "add(1, 2) = " + add(1, 2) + ", want 4";
        System.out.println("ok");
    }
}
