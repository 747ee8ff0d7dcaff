from tests.api.conftest import registry, services  # noqa: F401 - fixtures
