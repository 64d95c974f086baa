"""transformers' own common tests, from the source distribution of the installed transformers (fetched by
`transformers_common.load()`), run against PvtModel, PvtForImageClassification and PvtBackbone for tiny v1, v2 and
v2-li configs, against the UperNet and DETR heads, and against the image processors. A test is skipped only where
transformers' own pvt_v2 tests skip it, with the same reason; where pvt_v2 replaces a mixin test for a reason that
holds here too (no "stem" stage, feature maps instead of token sequences), the replacement is written here."""

import importlib
import inspect
import tempfile
import unittest
from unittest.mock import patch

import pytest
import torch
import transformers
import transformers_common
from conftest import FAMILIES, TINY
from transformers.models.auto import modeling_auto
from transformers.models.detr.modeling_detr import DetrModel, DetrSegmentationOutput
from transformers.testing_utils import slow

from pvt_hf import (
    PvtBackbone,
    PvtConfig,
    PvtDeformableDetrImageProcessor,
    PvtDetrConfig,
    PvtDetrImageProcessor,
    PvtForImageClassification,
    PvtForObjectDetection,
    PvtForSemanticSegmentation,
    PvtHfImageProcessor,
    PvtModel,
    PvtSegmentationConfig,
    PvtSegmentationImageProcessor,
)

pytestmark = pytest.mark.slow  # transformers' ~1,000 common tests (about 6 minutes on 2 cores)


try:
    _package = transformers_common.load()
except transformers_common.Unavailable as error:
    pytest.skip(str(error), allow_module_level=True)

_modeling = importlib.import_module(f"{_package}.test_modeling_common")
_backbone = importlib.import_module(f"{_package}.test_backbone_common")
_configuration = importlib.import_module(f"{_package}.test_configuration_common")
_image_processing = importlib.import_module(f"{_package}.test_image_processing_common")
ModelTesterMixin, floats_tensor, ids_tensor = _modeling.ModelTesterMixin, _modeling.floats_tensor, _modeling.ids_tensor

IMAGE_SIZE = 32  # the smallest the tiny configs take (PvtConfig.min_input_size): keeps the ~700 tests quick


class PvtModelTester:
    """Tiny configs of one family, as transformers' PvtV2ModelTester builds them."""

    def __init__(self, parent, family: str, batch_size: int = 2, num_labels: int = 3):
        self.parent, self.family, self.batch_size, self.num_labels = parent, family, batch_size, num_labels
        self.image_size, self.num_channels, self.is_training = IMAGE_SIZE, 3, True
        self.hidden_sizes, self.depths = TINY["hidden_sizes"], TINY["depths"]

    def get_config(self) -> PvtConfig:
        return PvtConfig.from_preset(
            FAMILIES[self.family],
            **TINY,
            image_size=self.image_size,
            num_labels=self.num_labels,
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            out_indices=[0, 1, 2, 3],
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), pixel_values, ids_tensor([self.batch_size], self.num_labels)

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


def show_loading_warnings(test: unittest.TestCase) -> None:
    """transformers' tests read its loading warnings, which tests/conftest.py silences."""
    test.addCleanup(transformers.logging.set_verbosity, transformers.logging.get_verbosity())
    transformers.logging.set_verbosity_warning()


class PvtCommonTests(ModelTesterMixin):
    all_model_classes = (PvtModel, PvtForImageClassification)
    family = "v2"
    # as transformers' PvtV2ModelTest
    test_resize_embeddings = False
    has_attentions = False
    test_torch_exportable = True

    def setUp(self):
        show_loading_warnings(self)
        self.model_tester = PvtModelTester(self, self.family)
        self.config_tester = _configuration.ConfigTester(
            self,
            config_class=PvtConfig,
            has_text_modality=False,
            common_properties=["hidden_sizes", "num_attention_heads", "depths"],
            **{
                k: v
                for k, v in self.model_tester.get_config().to_diff_dict().items()
                if k not in ("id2label", "label2id")
            },
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_batching_equivalence(self, atol=5e-4, rtol=5e-4):
        super().test_batching_equivalence(atol=atol, rtol=rtol)  # (transformers' pvt_v2 tolerance)

    @unittest.skip(reason="Pvt does not use inputs_embeds (as transformers' pvt_v2)")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="Pvt has no get_input_embeddings / get_output_embeddings (as transformers' pvt_v2)")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="This architecture does not work with using reentrant (as transformers' pvt_v2)")
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(reason="This architecture does not work with using reentrant (as transformers' pvt_v2)")
    def test_training_gradient_checkpointing_use_reentrant(self):
        pass

    def test_hidden_states_output(self):
        """(pvt_v2's version: hidden states are the four stage maps, not token sequences.)"""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        strides = [4, 8, 16, 32]
        expected = [
            (c, IMAGE_SIZE // s, IMAGE_SIZE // s) for c, s in zip(self.model_tester.hidden_sizes, strides, strict=True)
        ]
        for model_class in self.all_model_classes:
            for via_config in (False, True):
                config.output_hidden_states = via_config
                model = model_class(config).eval()
                with torch.no_grad():
                    outputs = model(**inputs, output_hidden_states=None if via_config else True)
                self.assertEqual([tuple(h.shape[1:]) for h in outputs.hidden_states], expected)

    def test_forward_signature(self):
        for model_class in self.all_model_classes:
            names = list(inspect.signature(model_class.forward).parameters)
            self.assertEqual(names[1:2], ["pixel_values"])


def _family_class(base, family: str, name: str):
    return type(name, (base, unittest.TestCase), {"family": family, "__module__": __name__})


TestPvtV1Common = _family_class(PvtCommonTests, "v1", "TestPvtV1Common")
TestPvtV2Common = _family_class(PvtCommonTests, "v2", "TestPvtV2Common")
TestPvtV2LiCommon = _family_class(PvtCommonTests, "v2-li", "TestPvtV2LiCommon")


class PvtBackboneCommonTests(_backbone.BackboneTesterMixin):
    all_model_classes = (PvtBackbone,)
    has_attentions = False
    config_class = PvtConfig
    family = "v2"

    def setUp(self):
        self.model_tester = PvtModelTester(self, self.family)

    def test_config(self):
        """(pvt_v2's version: PVT has no "stem" stage.)"""
        self.assertEqual(PvtConfig().stage_names, ["stage1", "stage2", "stage3", "stage4"])
        self.assertEqual(PvtConfig(out_features=None, out_indices=None).out_features, ["stage4"])
        self.assertEqual(PvtConfig(out_features=["stage2", "stage4"]).out_indices, [1, 3])
        self.assertEqual(PvtConfig(out_indices=[0, 2]).out_features, ["stage1", "stage3"])
        with self.assertRaises(ValueError):
            PvtConfig(out_features=["stage1", "stage2"], out_indices=[0, 2])

    def test_config_save_pretrained(self):
        """(pvt_v2's version: out indices that exist without a "stem" stage.)"""
        config = PvtConfig(out_indices=[0, 1, 2, 3])
        with tempfile.TemporaryDirectory() as folder:
            config.save_pretrained(folder)
            self.assertEqual(PvtConfig.from_pretrained(folder).to_dict(), config.to_dict())


TestPvtV1BackboneCommon = _family_class(PvtBackboneCommonTests, "v1", "TestPvtV1BackboneCommon")
TestPvtV2BackboneCommon = _family_class(PvtBackboneCommonTests, "v2", "TestPvtV2BackboneCommon")
TestPvtV2LiBackboneCommon = _family_class(PvtBackboneCommonTests, "v2-li", "TestPvtV2LiBackboneCommon")


class PvtImageProcessingTester(_image_processing.ImageProcessingTester):
    """transformers' tester, told the processor class directly (it would look it up by the test folder's name)."""

    def __init__(self, parent, processor_class, **kwargs):
        self.processor_class = processor_class
        super().__init__(parent, batch_size=3, min_resolution=30, max_resolution=80, **kwargs)

    def _get_image_processing_classes(self):
        # pvt_hf registers its PIL processors for both of AutoImageProcessor's backends (torchvision is optional)
        return {"pil": self.processor_class, "torchvision": self.processor_class}


class PvtImageProcessingCommonTests(_image_processing.ImageProcessingTestMixin):
    processor_class, processor_kwargs = PvtHfImageProcessor, {}

    def setUp(self):
        self.image_processor_tester = PvtImageProcessingTester(self, self.processor_class, **self.processor_kwargs)


TestPvtHfImageProcessorCommon = type(
    "TestPvtHfImageProcessorCommon",
    (PvtImageProcessingCommonTests, unittest.TestCase),
    {"processor_kwargs": dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})},
)
_post_process = _image_processing.PostProcessSemanticSegmentationTestMixin
TestPvtSegmentationImageProcessorCommon = type(
    "TestPvtSegmentationImageProcessorCommon",
    (PvtImageProcessingCommonTests, _post_process, unittest.TestCase),
    {
        "processor_class": PvtSegmentationImageProcessor,
        "processor_kwargs": dict(size={"height": 32, "width": 40}, num_labels=150),
    },
)


class PvtDetrImageProcessingTester(PvtImageProcessingTester):
    def prepare_post_process_semantic_segmentation_inputs(self):
        """DETR's segmentation outputs: class logits per query (plus "no object") and a mask per query."""
        num_queries, height, width = 5, 8, 10
        outputs = DetrSegmentationOutput(
            logits=torch.randn(self.batch_size, num_queries, self.num_labels + 1),
            pred_masks=torch.randn(self.batch_size, num_queries, height, width),
        )
        return {"outputs": outputs}, {"num_labels": self.num_labels, "height": height, "width": width}


class TestPvtDetrImageProcessorCommon(PvtImageProcessingCommonTests, _post_process, unittest.TestCase):
    processor_class, processor_kwargs = PvtDetrImageProcessor, dict(size={"shortest_edge": 40, "longest_edge": 64})

    def setUp(self):
        self.image_processor_tester = PvtDetrImageProcessingTester(
            self, self.processor_class, num_labels=4, **self.processor_kwargs
        )


TestPvtDeformableDetrImageProcessorCommon = type(
    "TestPvtDeformableDetrImageProcessorCommon",
    (PvtImageProcessingCommonTests, unittest.TestCase),
    {
        "processor_class": PvtDeformableDetrImageProcessor,
        "processor_kwargs": dict(size={"shortest_edge": 40, "longest_edge": 64}),
    },
)


class PvtUperNetTester(PvtModelTester):
    """PVT + transformers' UperNet head (PvtForSemanticSegmentation, decode_head="upernet"), as transformers'
    UperNetModelTester builds its model (auxiliary head on)."""

    def get_config(self) -> PvtSegmentationConfig:
        backbone = super().get_config()
        backbone.num_labels = 0
        return PvtSegmentationConfig(
            backbone_config=backbone,
            decode_head="upernet",
            hidden_size=32,
            use_auxiliary_head=True,
            auxiliary_channels=16,
            num_labels=self.num_labels,
        )


class TestPvtUperNetCommon(PvtCommonTests, unittest.TestCase):
    all_model_classes = (PvtForSemanticSegmentation,)
    test_torch_exportable = False  # (transformers' UperNet test leaves it off)

    def setUp(self):
        super().setUp()
        # the class-name table transformers' tests read to give a model labels (ours is not in transformers)
        names = modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES
        self.enterContext(patch.dict(names, {PvtSegmentationConfig.model_type: "PvtForSemanticSegmentation"}))
        self.model_tester = PvtUperNetTester(self, "v2")
        self.config_tester = _configuration.ConfigTester(
            self,
            config_class=PvtSegmentationConfig,
            has_text_modality=False,
            hidden_size=37,
            common_properties=["hidden_size"],
        )

    @unittest.skip(reason="UperNet does not use inputs_embeds (as transformers' UperNet)")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="UperNet does not support input and output embeddings (as transformers' UperNet)")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="UperNet does not have tied weights (as transformers' UperNet)")
    def test_tied_model_weights_key_ignore(self):
        pass


def _skipped(reason: str):
    """A test transformers' DETR tests skip, skipped with their reason."""
    return unittest.skip(reason=f"{reason} (as transformers' DETR)")(lambda self: None)


class PvtDetrTester(PvtModelTester):
    """PVT + transformers' DETR (PvtForObjectDetection), sized as transformers' DetrModelTester (2 layers, d_model 32,
    8 heads, FFN 4, 8 targets per image) on a smaller batch and image: at 64 px the stride-32 stage gives the encoder
    2x2 tokens (32 px would leave it a single one, under which masking and attention cannot be told apart).
    One query per image column instead of DetrModelTester's 12: the mixin's eager-vs-SDPA test pads a decoder mask
    as long as `pixel_values`' last dimension (transformers' own DETR fails it on this harness with 12 queries)."""

    def __init__(self, parent, family: str):
        super().__init__(parent, family, num_labels=3)
        self.image_size = 64
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = 32, 2, 8
        self.num_queries, self.n_targets = self.image_size, 8
        self.encoder_seq_length, self.decoder_seq_length = (self.image_size // 32) ** 2, self.num_queries

    def get_config(self) -> PvtDetrConfig:
        backbone = super().get_config()
        backbone.num_labels = 0
        return PvtDetrConfig(
            backbone_config=backbone,
            d_model=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            encoder_attention_heads=self.num_attention_heads,
            decoder_attention_heads=self.num_attention_heads,
            encoder_ffn_dim=4,
            decoder_ffn_dim=4,
            dropout=0.1,
            attention_dropout=0.1,
            num_queries=self.num_queries,
            num_labels=self.num_labels,
            auxiliary_loss=False,  # (DetrConfig's default, which DetrModelTester keeps)
        )

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {
            "pixel_values": pixel_values,
            "pixel_mask": torch.ones_like(pixel_values[:, 0], dtype=torch.long),
        }


class TestPvtDetrCommon(ModelTesterMixin, unittest.TestCase):
    """transformers' DetrModelTest (tests/models/detr/test_modeling_detr.py; the sdist does not ship it) on
    PvtForObjectDetection: its flags, skips (with their reasons) and overrides of mixin tests, adapted only where the
    model differs (a PVT backbone instead of ResNet / timm; no separate base model class)."""

    all_model_classes = (PvtForObjectDetection,)
    # as transformers' DetrModelTest
    is_encoder_decoder = True
    test_missing_keys = False
    zero_init_hidden_state = True
    test_torch_exportable = True

    def setUp(self):
        show_loading_warnings(self)
        # the class-name table DETR's tests read to give a model detection targets (ours is not in transformers)
        names = modeling_auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES
        self.enterContext(patch.dict(names, {PvtDetrConfig.model_type: "PvtForObjectDetection"}))
        # and the base-model table (DETR's base model, whose state PvtForObjectDetection nests under `model`)
        self.enterContext(patch.dict(modeling_auto.MODEL_MAPPING._extra_content, {PvtDetrConfig: DetrModel}))
        self.model_tester = PvtDetrTester(self, "v2")
        self.config_tester = _configuration.ConfigTester(self, config_class=PvtDetrConfig, has_text_modality=False)

    def _is_detector(self, model_class) -> bool:
        return model_class.__name__ in modeling_auto.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES.values()

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """(DETR's: detection heads get a list of targets, one dict per image.)"""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and self._is_detector(model_class):
            n = self.model_tester.n_targets
            target = {"class_labels": torch.ones(n, dtype=torch.long), "boxes": torch.ones(n, 4)}
            inputs_dict["labels"] = [dict(target) for _ in range(self.model_tester.batch_size)]
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_detr_object_detection_head_model(self):
        """(DETR's: logits over the labels plus "no object", one box per query, a scalar loss with targets.)"""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        batch, queries = self.model_tester.batch_size, self.model_tester.num_queries
        for model_class in filter(self._is_detector, self.all_model_classes):
            model = model_class(config).eval()
            for kwargs in (
                inputs,
                {"pixel_values": inputs["pixel_values"]},
                self._prepare_for_class(inputs, model_class, True),
            ):
                result = model(**kwargs)
                self.assertEqual(result.logits.shape, (batch, queries, self.model_tester.num_labels + 1))
                self.assertEqual(result.pred_boxes.shape, (batch, queries, 4))
            self.assertEqual(result.loss.shape, ())

    # transformers' DETR skips, with its reasons
    test_inputs_embeds = test_inputs_embeds_matches_input_ids = _skipped("DETR does not use inputs_embeds")
    test_model_get_set_embeddings = _skipped("DETR does not have a get_input_embeddings method")
    test_resize_tokens_embeddings = _skipped("DETR does not use token embeddings")
    test_model_outputs_equivalence = slow(_skipped("TODO Niels: fix me!"))

    def _check_attentions(self, outputs, name: str, query_length: int, key_length: int):
        attentions = getattr(outputs, name)
        self.assertIsInstance(attentions, (list, tuple))
        self.assertEqual(len(attentions), self.model_tester.num_hidden_layers)
        self.assertEqual(
            list(attentions[0].shape[-3:]), [self.model_tester.num_attention_heads, query_length, key_length]
        )

    def test_attention_outputs(self):
        """(DETR's: encoder self-, decoder self- and cross-attentions, asked for by argument or by config; attentions
        come last, after the hidden states.)"""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.return_dict = True
        encoder_length, decoder_length = self.model_tester.encoder_seq_length, self.model_tester.decoder_seq_length
        for model_class in self.all_model_classes:
            model = model_class._from_config(config, attn_implementation="eager").eval()
            with torch.no_grad():
                by_argument = model(**inputs, output_attentions=True, output_hidden_states=False)
            model.config.output_attentions = True
            with torch.no_grad():
                outputs = model(**inputs)
            for output in (by_argument, outputs):
                self._check_attentions(output, "encoder_attentions", encoder_length, encoder_length)
            self._check_attentions(outputs, "decoder_attentions", decoder_length, decoder_length)
            self._check_attentions(outputs, "cross_attentions", decoder_length, encoder_length)
            # loss-free DETR outputs: last hidden state, 3 attention kinds, encoder last hidden state, + logits & boxes
            self.assertEqual(len(outputs), 5 + 2 * self._is_detector(model_class))
            with torch.no_grad():
                everything = model(**inputs, output_hidden_states=True)
            self.assertEqual(len(everything), len(outputs) + 2)  # encoder and decoder hidden states
            self._check_attentions(everything, "encoder_attentions", encoder_length, encoder_length)

    def test_retain_grad_hidden_states_attentions(self):
        """(DETR's: no gradient check on the decoder hidden states, as the queries do not require grad.)"""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.output_hidden_states = config.output_attentions = True
        model = self.all_model_classes[0](config)
        outputs = model(**inputs)
        retained = [outputs.encoder_hidden_states[0], outputs.encoder_attentions[0]]
        retained += [outputs.decoder_attentions[0], outputs.cross_attentions[0]]
        for tensor in retained:
            tensor.retain_grad()
        outputs[0].flatten()[0].backward(retain_graph=True)
        for tensor in retained:
            self.assertIsNotNone(tensor.grad)

    def test_forward_auxiliary_loss(self):
        """(DETR's: with auxiliary losses on, one set of auxiliary outputs per decoder layer but the last.)"""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.auxiliary_loss = True
        for model_class in filter(self._is_detector, self.all_model_classes):
            outputs = model_class(config)(**self._prepare_for_class(inputs, model_class, return_labels=True))
            self.assertEqual(len(outputs.auxiliary_outputs), self.model_tester.num_hidden_layers - 1)

    def test_forward_signature(self):
        """(DETR's: pixel_values, then pixel_mask.)"""
        for model_class in self.all_model_classes:
            names = list(inspect.signature(model_class.forward).parameters)
            self.assertEqual(names[1:3], ["pixel_values", "pixel_mask"])

    def test_greyscale_images(self):
        """(DETR's: a one-channel backbone takes one-channel images.)"""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        inputs["pixel_values"] = inputs["pixel_values"][:, :1]
        config.num_channels = config.backbone_config.num_channels = 1
        for model_class in self.all_model_classes:
            with torch.no_grad():
                self.assertTrue(model_class(config).eval()(**inputs))
