import pytest
from tests.scoring.toy import register_toy_model

from cmle.errors import RegistryError
from cmle.scoring import model_ref


def test_alias_version_and_latest_resolve_to_one_concrete_version(settings, champion):
    name = settings.cloud.model_name
    assert (champion.name, champion.version, champion.requested) == (name, "1", "champion")
    assert champion.uri == f"models:/{name}/1"
    register_toy_model(name, alias="challenger", shift=1.0)
    assert model_ref.resolve(name, "challenger").version == "2"
    assert model_ref.resolve(name, "2").version == "2"
    assert model_ref.resolve(name, " 1 ").version == "1"
    assert model_ref.resolve(name, "latest").version == "2"
    assert model_ref.resolve(name).version == "1"  # champion did not move


def test_missing_alias_version_or_model_is_a_clear_registry_error(settings, champion):
    name = settings.cloud.model_name
    with pytest.raises(RegistryError, match=r"no alias 'gold' \(aliases: champion -> v1\)"):
        model_ref.resolve(name, "gold")
    with pytest.raises(RegistryError, match=r"no version 9 "):
        model_ref.resolve(name, "9")
    for ref in ("champion", "3"):
        with pytest.raises(RegistryError, match=r"'other_model' does not exist .*run the train stage"):
            model_ref.resolve("other_model", ref)
    with pytest.raises(RegistryError, match="names no model version"):
        model_ref.resolve(name, "  ")


def test_loaded_model_is_the_resolved_version(settings, champion):
    model = model_ref.load(champion)
    assert model.metadata.get_input_schema().input_names() == ["visits", "days_since_last_visit", "region"]
