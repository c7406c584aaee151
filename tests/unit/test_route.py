"""Which account a collection belongs to (service.pipeline.steps.route.Routes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.pipeline.steps.route import Routes

NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=4)


def test_a_named_collection_goes_to_its_account_and_the_rest_to_the_catch_all() -> None:
    routes = Routes([("shoes", ("shoes", "boots")), ("rest", ("*",))])
    assert routes.account_of("boots") == "shoes"
    assert routes.account_of("hats") == "rest"
    assert routes.account_of("*") == "rest"


def test_without_a_catch_all_an_unnamed_collection_has_no_account() -> None:
    routes = Routes([("shoes", ("shoes",)), ("bags", ("bags",))])
    assert routes.account_of("bags") == "bags"
    assert routes.account_of("hats") is None


@given(st.dictionaries(NAMES, st.sets(NAMES, min_size=1), max_size=5), NAMES)
def test_a_collection_goes_to_the_one_account_that_names_it(accounts: dict[str, set[str]], collection: str) -> None:
    owned: dict[str, str] = {}
    for account, collections in accounts.items():
        for name in collections - set(owned):
            owned[name] = account
    routes = Routes((account, [name for name, owner in owned.items() if owner == account]) for account in accounts)
    assert routes.account_of(collection) == owned.get(collection)
