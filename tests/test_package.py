"""Importing the package: it registers with transformers' Auto classes and leaves transformers' logging as it was."""

from transformers.utils import logging

IMPORT_WITH_A_FAILING_REGISTRATION = """
    import json
    import transformers
    from transformers.utils import logging

    logging.set_verbosity_info()
    register, seen = transformers.AutoConfig.register, {}

    def broken(*args, **kwargs):
        raise RuntimeError("registration failed")

    transformers.AutoConfig.register = broken
    try:
        import pvt_hf
    except RuntimeError as error:
        seen["error"] = str(error)
    seen["verbosity_after_failure"] = logging.get_verbosity()

    transformers.AutoConfig.register = register
    import pvt_hf

    seen["verbosity"] = logging.get_verbosity()
    seen["registered"] = type(transformers.AutoConfig.for_model("pvt_hf")) is pvt_hf.PvtConfig
    print(json.dumps(seen))
"""


def test_import_keeps_transformers_verbosity_even_when_registration_fails(fresh_python):
    # a fresh process: this one imported pvt_hf already
    seen = fresh_python(IMPORT_WITH_A_FAILING_REGISTRATION, with_pvt_hf=True)
    assert seen.get("error") == "registration failed"  # the failing registration is not swallowed
    assert seen["verbosity_after_failure"] == seen["verbosity"] == logging.INFO
    assert seen["registered"]
