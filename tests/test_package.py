"""Importing the package: it registers with transformers' Auto classes and leaves transformers' logging as it was."""

import subprocess
import sys
import textwrap


def test_import_keeps_transformers_verbosity_even_when_registration_fails():
    # a fresh process: this one imported pvt_hf already
    script = textwrap.dedent(
        """
        import transformers
        from transformers.utils import logging

        logging.set_verbosity_info()
        register = transformers.AutoConfig.register

        def broken(*args, **kwargs):
            raise RuntimeError("registration failed")

        transformers.AutoConfig.register = broken
        try:
            import pvt_hf
        except RuntimeError:
            pass
        else:
            raise AssertionError("the failing registration went unnoticed")
        assert logging.get_verbosity() == logging.INFO, logging.get_verbosity()

        transformers.AutoConfig.register = register
        import pvt_hf

        assert logging.get_verbosity() == logging.INFO, logging.get_verbosity()
        assert type(transformers.AutoConfig.for_model("pvt_hf")) is pvt_hf.PvtConfig  # registered
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
