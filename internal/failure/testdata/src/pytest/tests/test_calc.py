import sys, os
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from calc import add


def test_add():
    assert add(1, 2) == 4


def test_zero():
    assert add(0, 0) == 0
