"""Model cards, Hub uploads and remote-code export for hf-vq tokenizers.

- [`cards`]: the `README.md` and `card_info.json` every saved model folder gets, rendered from what the model says
  about itself (see that module for the `card_info` keys).
- [`push`]: what goes up from a saved model folder, in one commit; `model.push_to_hub`.
- [`remote_code`]: shipping the modeling files so a model loads with transformers alone.

Importing this package installs the card writer and the uploader as the models' Hub hooks, so that every
`save_pretrained` writes a card and `push_to_hub` uploads through [`push_model_to_hub`].
"""

from ..modeling.modeling_utils import register_integrations
from .cards import (
    CARD_INFO_FILENAME,
    CARD_INFO_KEYS,
    CARD_TEMPLATE,
    DEFAULT_LICENSE,
    EVAL_RESULTS_FILENAME,
    load_card_info,
    merge_results,
    model_card_template_path,
    render_model_card,
    update_model_card,
    write_model_card,
)
from .push import (
    HubAccessError,
    check_saved_model_folder,
    push_folder,
    push_model_to_hub,
    require_hub_token,
    upload_file_list,
)
from .remote_code import add_remote_code, remote_code_files, save_with_remote_code

register_integrations(write_model_card=write_model_card, push_model_to_hub=push_model_to_hub)

__all__ = [
    "CARD_INFO_FILENAME",
    "CARD_INFO_KEYS",
    "CARD_TEMPLATE",
    "DEFAULT_LICENSE",
    "EVAL_RESULTS_FILENAME",
    "HubAccessError",
    "add_remote_code",
    "check_saved_model_folder",
    "load_card_info",
    "merge_results",
    "model_card_template_path",
    "push_folder",
    "push_model_to_hub",
    "remote_code_files",
    "render_model_card",
    "require_hub_token",
    "save_with_remote_code",
    "update_model_card",
    "upload_file_list",
    "write_model_card",
]
