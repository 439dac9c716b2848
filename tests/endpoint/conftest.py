"""Fixtures shared by the endpoint tests."""
# pytest finds a fixture by its name in a conftest; the alias marks the import as a re-export
from tests.scenario import pair as pair
