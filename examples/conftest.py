"""What an augmentation repository adds to its conftest.py: nothing is required.

Optional: extra distances through the pytest_psa_distances hook, usable by name everywhere.
"""


def pytest_psa_distances():
    # mean absolute pixel difference, as an example of a user-defined distance
    return {"l1_mean": lambda x, y: (x - y).abs().flatten(1).mean(1)}
