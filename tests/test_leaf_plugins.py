"""One plugin registry: the leaves of a client's workflows use that client's ``Plugins``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import vow.retry
import vow.stores.memory
from vow import Context, LeafContext, Vow, VowError, hookimpl
from vow.channels import Message, Receipt, deliver
from vow.images import GeneratedImage, ImageRequest
from vow.images.pipeline import generate_image
from vow.plugins import Plugins

# A whole PNG (each chunk's length and CRC right): generate_image checks them before writing.
PNG_1x1 = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000b49444154789c6360000200000500017a5eab3f0000000049454e44ae426082")


class Recorder:
    """A channel and an image provider that exist only in one client's registry."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def validate(self, message: Message) -> None:
        pass

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        self.sent.append(message.to)
        return Receipt("local", "test", f"m-{len(self.sent)}", message.to, ctx.idempotency_key, ctx.attempt)

    def generate(self, request: ImageRequest, ctx: LeafContext) -> GeneratedImage:
        return GeneratedImage(PNG_1x1, provider="local-images")


def client_plugins(recorder: Recorder) -> Plugins:
    class Local:
        @staticmethod
        @hookimpl
        def vow_register_channels(register: Any) -> None:
            register("local", lambda: recorder)

        @staticmethod
        @hookimpl
        def vow_register_image_providers(register: Any) -> None:
            register("local-images", lambda: recorder)

    plugins = Plugins(entry_points=False)
    plugins.add(vow.stores.memory, "memory")
    plugins.add(vow.retry, "retry")
    plugins.add(Local, "local")
    return plugins


def notify(ctx: Context, to: str):
    return (yield ctx.run(deliver, "local", {"to": to, "body": "hi"}))


def picture(ctx: Context, out: str):
    return (yield ctx.run(generate_image, "local-images", {"prompt": "a fox", "style": "cartoon"}, out))


def test_a_channel_registered_on_a_client_is_the_one_its_workflows_deliver_through() -> None:
    recorder = Recorder()
    with Vow(store="memory:", plugins=client_plugins(recorder)) as client:
        receipt = client.run("n/1", notify, "ada")
    assert recorder.sent == ["ada"] and receipt["message_id"] == "m-1"
    with Vow(store="memory:") as other:  # another client, the environment's plugins: no such channel
        with pytest.raises(Exception, match="channel 'local' is not installed"):
            other.run("n/1", notify, "ada")
    assert recorder.sent == ["ada"]


def test_an_image_provider_registered_on_a_client_is_the_one_its_workflows_use(tmp_path: Path) -> None:
    with Vow(store="memory:", plugins=client_plugins(Recorder())) as client:
        image = client.run("p/1", picture, str(tmp_path))
    assert image["provider"] == "local-images" and (tmp_path / "cartoon.png").read_bytes() == PNG_1x1


def test_a_leaf_context_built_by_hand_needs_a_registry_to_deliver() -> None:
    with pytest.raises(VowError, match="its LeafContext has none"):
        deliver(LeafContext(id="t.1"), "local", {"to": "x", "body": "y"})
    recorder = Recorder()
    deliver(LeafContext(id="t.1", plugins=client_plugins(recorder)), "local", {"to": "x", "body": "y"})
    assert recorder.sent == ["x"]
