pub fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds() {
        assert_eq!(super::add(1, 2), 4, "one plus two");
    }

    #[test]
    fn adds_zero() {
        assert_eq!(super::add(0, 0), 0);
    }
}
