"""A stand-in for the few `transformers` symbols the published LongLLaMA code imports.

Debian has python3-torch but no transformers; the reference's modeling file needs only a config
base class, a module base class, output records, docstring decorators, a logger and the activation
table. `install()` registers them under the `transformers` module names, before the reference is
imported. Written for this project; nothing of transformers is copied.
"""
import dataclasses
import logging as _logging
import sys
import types
from typing import Optional, Tuple

import torch
from torch import nn


class PretrainedConfig:
    """Keyword arguments become attributes; the output switches default off, return_dict on."""

    def __init__(self, **kwargs):
        self.output_attentions = False
        self.output_hidden_states = False
        self.use_return_dict = True
        self.torch_dtype = None
        for k, v in kwargs.items():
            setattr(self, k, v)


class PreTrainedModel(nn.Module):
    config_class = PretrainedConfig
    base_model_prefix = "model"

    def __init__(self, config, *args, **kwargs):
        super().__init__()
        self.config = config

    def post_init(self):
        self.apply(self._init_weights)

    def _init_weights(self, module):
        pass


class ModelOutput:
    """Fields by name; by index or slice over the fields that are set, as transformers' outputs."""

    def _values(self):
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def __getitem__(self, i):
        return self._values()[i]

    def to_tuple(self):
        return self._values()


@dataclasses.dataclass
class BaseModelOutputWithPast(ModelOutput):
    last_hidden_state: Optional[torch.Tensor] = None
    past_key_values: Optional[Tuple] = None
    hidden_states: Optional[Tuple] = None
    attentions: Optional[Tuple] = None


@dataclasses.dataclass
class CausalLMOutputWithPast(ModelOutput):
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    past_key_values: Optional[Tuple] = None
    hidden_states: Optional[Tuple] = None
    attentions: Optional[Tuple] = None


@dataclasses.dataclass
class SequenceClassifierOutputWithPast(CausalLMOutputWithPast):
    pass


class _Logger(_logging.Logger):
    def warning_once(self, *args, **kwargs):
        self.warning(*args, **kwargs)


def _get_logger(name=None):
    _logging.setLoggerClass(_Logger)
    return _logging.getLogger(name)


def _docstrings(*_args, **_kwargs):
    return lambda f: f


def install():
    """Registers the stand-in as `transformers` and its submodules (idempotent)."""
    if "transformers" in sys.modules:
        return
    root = types.ModuleType("transformers")
    parts = {
        "configuration_utils": {"PretrainedConfig": PretrainedConfig},
        "modeling_utils": {"PreTrainedModel": PreTrainedModel},
        "modeling_outputs": {"BaseModelOutputWithPast": BaseModelOutputWithPast,
                             "CausalLMOutputWithPast": CausalLMOutputWithPast,
                             "SequenceClassifierOutputWithPast": SequenceClassifierOutputWithPast},
        "activations": {"ACT2FN": {"silu": nn.SiLU()}},
        "utils": {"add_start_docstrings": _docstrings, "add_start_docstrings_to_model_forward": _docstrings,
                  "replace_return_docstrings": _docstrings,
                  "logging": types.SimpleNamespace(get_logger=_get_logger)},
    }
    for name, symbols in parts.items():
        m = types.ModuleType("transformers." + name)
        m.__dict__.update(symbols)
        setattr(root, name, m)
        sys.modules["transformers." + name] = m
    sys.modules["transformers"] = root
