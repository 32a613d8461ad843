import unittest


class TestConfig(unittest.TestCase):
    def test_port(self):
        config = {"host": "localhost"}
        self.assertEqual(config["port"], 8080)


if __name__ == "__main__":
    unittest.main()
