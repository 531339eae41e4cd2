"""From a pipeline file and its input to a :class:`Plan`: everything one run needs, checked.

Planning renders every template, expands ``for_each``, validates each plugin's options with
its own attrs class, builds every channel and image provider once (so a missing secret is
found now) and asks each channel to ``validate`` its rendered message (so a bad recipient is
found now). Nothing is stored and nothing is sent: a plan that is made can run, and a file
that cannot run fails here with one message naming the file, line and key.

The plan's ``spec`` is a :class:`~vow.pipeline.model.PlannedRun`, the pipeline workflow's only
argument; it is stored as plain JSON, so a worker in another process runs it without the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path as FilePath
from typing import Any

import attrs

from vow.channels import Message
from vow.config import check_finite, describe
from vow.config import structure as structure_options
from vow.errors import ConfigError, format_path
from vow.faults import Faults, with_faults
from vow.files import path_problem
from vow.images import ImageRequest
from vow.images.pipeline import STYLE_NAME, STYLE_RULE, parse_size
from vow.naming import not_in_a_run_id
from vow.pipeline import template_limits
from vow.pipeline.inputs import TOO_DEEP, check_depth, merge, not_json, too_deep
from vow.pipeline.model import Branch, ChannelBranch, Gate, ImageBranch, PlannedRun
from vow.pipeline.source import Path, Source, SpecError, read
from vow.pipeline.spec import FORMAT_VERSION, ChannelEntry, ImageEntry, PipelineSpec, structure
from vow.pipeline.templates import TemplateError, plain, render_text, render_value, slug, wrap
from vow.pipeline.workflow import RESERVED
from vow.plugins import Plugins
from vow.reserved import OWN_ID, OWN_ID_FORMS
from vow.retention import parse_duration
from vow.retry import from_config
from vow.stores import parse_store_url, redact_url

# \A and \Z, not ^ and $: "$" also matches before a final line break, so "a\n" passed as an id.
BRANCH_ID = re.compile(r"\A[A-Za-z0-9+][A-Za-z0-9_.@+-]{0,127}\Z")
# Said whole, the first character too: "_x" fits "letters, digits and _ . @ + -" yet is refused.
BRANCH_ID_RULE = "1-128 letters, digits and _ . @ + -, starting with a letter, a digit or +"
DEFAULT_IMAGE_OUTPUT = ".vow/output"
MAX_PLAN_SIZE = 50_000_000
"""The most a whole plan may hold, in characters of text plus items of lists and mappings (as
:func:`vow.pipeline.template_limits.measure` counts), summed over everything it renders: each
template has its own bound, and ``for_each`` multiplies it by its items. The plan is stored with
its run as one value, so this also bounds what a run stores before its first branch."""


@attrs.frozen
class Plan:
    """One run of a pipeline file, ready to start."""

    file: str
    name: str
    run_id: str
    store: str | None
    spec: PlannedRun
    schedule: dict[str, Any] | None = None
    """The file's ``schedule:`` block, checked (what ``vow schedule add`` stores); not part of the run."""
    timeout: float | None = None
    """The file's top-level ``timeout:`` in seconds: how long the whole run may take before it and its
    pending branches time out. Passed to ``vow.run(..., timeout=)``, which stores it as the run's deadline;
    not part of ``spec``, so the plan stored as the run's argument is the same JSON as without it."""
    legacy_output: str | None = None
    """The default output folder vow 0.2 gave this run id (``.vow/output/`` and the id's slug alone), when
    it is not ``spec.output``: a run stored with it keeps it (:meth:`as_stored`)."""

    def as_stored(self, stored: PlannedRun) -> Plan:
        """This plan with the output folder of ``stored`` (the plan run ``run_id`` was stored with), when
        that is the folder an older vow gave this id by default and the only difference; else this plan.
        A run started before default folders were told apart by a digest then joins, and resumes in, its
        own folder."""
        if self.legacy_output is None or stored.output != self.legacy_output:
            return self
        old = attrs.evolve(self, spec=attrs.evolve(self.spec, output=self.legacy_output))
        return old if old.spec.to_json() == stored.to_json() else self

    @property
    def branches(self) -> list[Branch]:
        """The branches the run fans out to, in file order."""
        return self.spec.branches

    @property
    def gate_id(self) -> str | None:
        """The id of the outside promise the run waits for first, if it has a gate."""
        return self.spec.gate_id(self.run_id)


def output_folder(run_id: str) -> str:
    """The name of run ``run_id``'s default output folder (``run.folder``): the id itself when it is its
    own slug, else its slug, ``@`` and a digest of the id. No slug holds ``@``, so two run ids that slug
    alike (``img/a:b``, ``img/a-b``) never share a folder, and one never takes an id's own."""
    name = slug(run_id)
    if name == run_id:
        return name
    return f"{name}@{hashlib.sha256(run_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def load(file: str, *, plugins: Plugins, input: Mapping[str, Any] | None = None, run_id: str | None = None) -> Plan:
    """Read, check and render pipeline ``file`` for one run (``input`` goes over the file's own).

    ``plugins`` is the registry the run will use (the ``Vow`` client's ``plugins``): channels,
    image providers, retry policies and stores are checked against it.
    """
    return make_plan(read(file), plugins=plugins, input=input, run_id=run_id)


def make_plan(source: Source, *, plugins: Plugins, input: Mapping[str, Any] | None = None,
              run_id: str | None = None, tick: Mapping[str, Any] | None = None, base_dir: str | None = None) -> Plan:
    """Check and render a parsed pipeline file against ``plugins`` (the registry the run will use).

    ``tick`` is given for a run a schedule starts (:mod:`vow.schedules`): templates see it as
    ``schedule`` (``{{ schedule.tick }}``, ``{{ schedule.name }}``). ``base_dir`` is the directory a
    relative ``output`` is under (default: the working directory), so every worker that plans the
    same scheduled run writes to the same place.
    """
    if source.data is None:
        raise source.error((), "the file is empty (a pipeline needs at least version, name and fan_out)")
    spec = structure(source, PipelineSpec, source.data, ())
    return _Planner(source, spec, plugins, base_dir).plan(dict(input or {}), run_id, tick)


class _Planner:
    def __init__(self, source: Source, spec: PipelineSpec, plugins: Plugins, base_dir: str | None = None) -> None:
        self.source = source
        self.spec = spec
        self.plugins = plugins
        self.base_dir = FilePath(base_dir) if base_dir is not None else FilePath.cwd()
        self.built: dict[str, Any] = {}  # one channel / provider per (name, options, faults)
        self.defaults_rate_limit: dict[str, Any] | None = None
        self.rendered = 0  # the size of everything rendered so far (MAX_PLAN_SIZE)

    def error(self, path: Path, problem: str) -> SpecError:
        return self.source.error(path, problem)

    # ------------------------------------------------------------------ the whole file
    def plan(self, overrides: dict[str, Any], run_id: str | None, tick: Mapping[str, Any] | None = None) -> Plan:
        spec = self.spec
        if spec.version != FORMAT_VERSION:
            raise self.error(("version",), f"{spec.version} is not supported (supported: {FORMAT_VERSION})")
        if not spec.name.strip():
            raise self.error(("name",), "must not be empty")
        if not isinstance(spec.input, dict):
            raise self.error(("input",), f"expected a mapping of default input values, got {describe(spec.input)}")
        if spec.store is not None:
            self.check_store(spec.store)
        timeout = self.duration(spec.timeout, ("timeout",))
        schedule = self.schedule()
        deep = too_deep(spec.input)  # stored as JSON with the plan: refused now, before any store is opened
        if deep is not None:
            raise self.error(("input", *deep), TOO_DEEP)
        check_depth(overrides, "input")  # the command line's are checked as they are read; a Python caller's here
        for given, where in ((spec.input, self.source.file), (overrides, None)):
            bad = not_json(given)  # a YAML date, say: stored with the plan, so refused before any store is opened
            if bad is not None:
                raise SpecError(bad[1], file=where, line=self.source.line(("input", *bad[0])) if where else None,
                                path=("input", *bad[0]))
        inputs = merge(spec.input, overrides)
        context: dict[str, Any] = {"input": wrap(inputs, "input"), "name": spec.name}
        # A run a schedule did not start sees empty values: {{ schedule.tick or "now" }} works in both.
        context["schedule"] = wrap(dict(tick) if tick is not None else {"name": None, "tick": None, "time": None},
                                   "schedule")
        run_id = self.run_id(run_id, inputs, context)
        context["run"] = wrap({"id": run_id, "slug": slug(run_id), "folder": output_folder(run_id)}, "run")
        defaults = self.defaults()
        self.defaults_rate_limit = defaults["rate_limit"]
        gate = self.gate(run_id)
        branches = self.fan_out(context, defaults)
        output = self.output(context, branches)
        legacy = str(self.base_dir / DEFAULT_IMAGE_OUTPUT / slug(run_id)) if spec.output is None and output else None
        return Plan(self.source.file, spec.name, run_id, spec.store, PlannedRun(
            name=spec.name, input=plain(inputs), gate=gate, fan_in=spec.fan_in,
            concurrency=defaults["concurrency"], output=output, branches=branches), schedule, timeout,
            legacy_output=legacy if legacy != output else None)

    def run_id(self, given: str | None, inputs: dict[str, Any], context: dict[str, Any]) -> str:
        if given is not None:
            where: Path = ()
            value, label = given, "--id"
        elif self.spec.id is not None:
            where, label = ("id",), ""
            value = self.render(self.spec.id, context, where, render_text)
        else:
            # Same pipeline, same input: same run. Starting it twice joins the first run.
            digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]
            return f"{slug(self.spec.name)}/{digest}"
        problem = _run_id_problem(value)
        if problem is not None:
            if label:
                raise SpecError(f"{label}: {problem}")
            raise self.error(where, problem)
        return value

    def defaults(self) -> dict[str, Any]:
        d = self.spec.defaults
        return {"retry": self.retry(d.retry, ("defaults", "retry")),
                "timeout": self.duration(d.timeout, ("defaults", "timeout")),
                "concurrency": self.positive(d.concurrency, ("defaults", "concurrency")),
                "rate_limit": self.rate_limit(d.rate_limit, ("defaults", "rate_limit"))}

    def rate_limit(self, data: Any, path: Path) -> dict[str, Any] | None:
        """A checked ``rate_limit`` mapping (see :mod:`vow.ratelimit`), or ``None``."""
        if data is None:
            return None
        from vow.ratelimit import RateLimit

        if not isinstance(data, dict):
            raise self.error(path, f"expected a mapping such as {{per_second: 1}}, got {describe(data)}")
        try:
            return structure_options(RateLimit, data, where=format_path(path)).to_dict()
        except ConfigError as exc:
            raise self.source.relocate(exc, path) from None

    def schedule(self) -> dict[str, Any] | None:
        """The ``schedule:`` block, checked: when runs start, and how missed ticks catch up."""
        block = self.spec.schedule
        if block is None:
            return None
        from vow.schedules.definition import check_name, parse_grace
        from vow.schedules.timing import Timing, parse_every

        every = None
        if block.every is not None:
            try:
                every = parse_every(block.every)
            except ConfigError as exc:
                raise self.error(("schedule", "every"), exc.problem.removeprefix("every: ")) from None
        try:
            timing = Timing(cron=block.cron, every=every, timezone=block.timezone)
        except ConfigError as exc:
            raise self.source.relocate(exc, ("schedule",)) from None
        try:
            grace = parse_grace(block.grace) if block.grace is not None else None
        except ConfigError as exc:
            raise self.error(("schedule", "grace"), exc.problem.removeprefix("grace: ")) from None
        if grace is not None and block.catch_up != "none":
            raise self.error(("schedule", "grace"), f"applies to catch_up: none only (catch_up is {block.catch_up})")
        if block.name is not None:
            try:
                check_name(block.name)
            except ConfigError as exc:
                raise self.error(("schedule", "name"), exc.problem) from None
        return {"cron": timing.cron, "every": timing.every, "timezone": timing.timezone,
                "catch_up": block.catch_up, "grace": grace, "name": block.name}

    def gate(self, run_id: str) -> Gate | None:
        gate = self.spec.gate
        if gate is None:
            return None
        if not BRANCH_ID.match(gate.promise):
            raise self.error(("gate", "promise"), f"{gate.promise!r} is not a usable promise name ({BRANCH_ID_RULE})")
        own = _own_form(f"{run_id}.{gate.promise}")
        if own is not None:
            raise self.error(("gate", "promise"), f"promise name {gate.promise!r} {own}; give the gate another "
                                                  "promise name")
        return Gate(gate.promise, self.duration(gate.timeout, ("gate", "timeout")))

    def output(self, context: dict[str, Any], branches: list[Branch]) -> str | None:
        if self.spec.output is not None:
            text = self.render(self.spec.output, context, ("output",), render_text)
            if not text.strip():
                raise self.error(("output",), "must not be empty (a directory, such as out/{{ run.slug }})")
            problem = path_problem(text)
            if problem is None and FilePath(text).parts.count("..") > FilePath(self.spec.output).parts.count(".."):
                # An input such as "../../etc" would move the run's files out of the folder the file names.
                problem = ("climbs out of its folder with a '..' that a template value brought: pass the value "
                           "through | slug")
            if problem is not None:
                raise self.error(("output",), f"{text!r} {problem}")
            return str(self.base_dir / FilePath(text).expanduser())
        if any(isinstance(b, ImageBranch) for b in branches):
            return str(self.base_dir / DEFAULT_IMAGE_OUTPUT / context["run"]["folder"])
        return None

    # ------------------------------------------------------------------ branches
    def fan_out(self, context: dict[str, Any], defaults: dict[str, Any]) -> list[Branch]:
        fan_out = self.spec.fan_out
        if not isinstance(fan_out, list) or not fan_out:
            raise self.error(("fan_out",), "expected a list of branches (each with channel: or image:), "
                                           f"got {describe(fan_out) if fan_out != [] else 'an empty list'}")
        branches: list[Branch] = []
        ids: dict[str, Path] = {}  # each branch id and style -> the position that made it first
        styles: dict[str, tuple[Path, str]] = {}  # a style without case -> (where, as written)
        for i, raw in enumerate(fan_out):
            path: Path = ("fan_out", i)
            if not isinstance(raw, dict):
                raise self.error(path, f"expected a branch mapping (channel: NAME or image: PROVIDER), "
                                       f"got {describe(raw)}")
            if ("channel" in raw) == ("image" in raw):
                raise self.error(path, "a branch needs exactly one of channel: NAME (a notification) "
                                       "or image: PROVIDER (an image)")
            made: list[Branch] = []
            if "channel" in raw:
                made += self.channel_branches(structure(self.source, ChannelEntry, raw, path), path, context, defaults)
            else:
                made += self.image_branches(structure(self.source, ImageEntry, raw, path), path, context, defaults)
            for j, branch in enumerate(made):
                # One branch per for_each item, in order: an item is named by its own position, so
                # two equal items of one list are told apart (not "fan_out[0] and fan_out[0]").
                where: Path = path + ("for_each", j) if raw.get("for_each") is not None else path
                if branch.id in RESERVED or (self.spec.gate and branch.id == self.spec.gate.promise):
                    raise self.error(path, f"branch id {branch.id!r} is taken by the run's own steps "
                                           f"({', '.join(RESERVED)} and the gate's promise); give the branch "
                                           "another id with id:")
                if branch.id in ids:
                    raise self.error(_duplicate_at(path, ids[branch.id]),
                                     f"branch id {branch.id!r} is used twice ({format_path(ids[branch.id])} and "
                                     f"{format_path(where)}); give each branch its own id with id:")
                ids[branch.id] = where
                if isinstance(branch, ImageBranch):
                    style = branch.request.style
                    # Without case: Cartoon.png and cartoon.png are one file on macOS and Windows.
                    if style.lower() in styles:
                        first, other = styles[style.lower()]
                        what = (f"style {style!r} is" if other == style else
                                f"styles {other!r} and {style!r} (one file where letter case does not count) are")
                        raise self.error(_duplicate_at(path, first),
                                         f"{what} generated twice ({format_path(first)} and {format_path(where)}); "
                                         f"each style is one image file, {style}.png")
                    styles[style.lower()] = (where, style)
                branches.append(branch)
        if not branches:
            raise self.error(("fan_out",), "no branches to run (every for_each is empty)")
        return branches

    def items(self, branch: Any, path: Path, context: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        """``(template context, note for errors)`` per for_each item (one, with no for_each)."""
        if branch.for_each is None:
            return [(context, "")]
        items = self.render(branch.for_each, context, path + ("for_each",), render_value)
        if not isinstance(items, list):
            raise self.error(path + ("for_each",), f"expected a list (or a template that gives one), "
                                                   f"got {describe(items)}")
        return [({**context, "item": wrap(item, "item"), "index": j}, f" (for_each item {j}: {item!r})")
                for j, item in enumerate(items)]

    def retry_and_timeout(self, b: Any, path: Path, defaults: dict[str, Any]) -> tuple[Any, Any]:
        """A branch's own retry policy and timeout, or the pipeline's defaults."""
        retry = self.retry(b.retry, path + ("retry",)) if b.retry is not None else defaults["retry"]
        timeout = self.duration(b.timeout, path + ("timeout",)) if b.timeout is not None else defaults["timeout"]
        return retry, timeout

    def options_and_faults(self, registry: Any, name: str, b: Any, ctx: dict[str, Any], path: Path,
                           note: str) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
        """A branch's rendered options (checked by the plugin's options class), faults and rate
        limit (its own ``options.rate_limit``, else the pipeline's ``defaults.rate_limit``)."""
        options = self.render(b.options or {}, ctx, path + ("options",), render_value, note)
        faults = self.render(b.faults, ctx, path + ("faults",), render_value, note) if b.faults else None
        limit = self.defaults_rate_limit
        if isinstance(options, dict) and "rate_limit" in options:
            options = dict(options)
            limit = self.rate_limit(options.pop("rate_limit"), path + ("options", "rate_limit"))
        self.check_options(registry, name, options, path + ("options",), note)
        self.check_faults(faults, path + ("faults",), note)
        return options, faults, limit

    def channel_branches(self, b: ChannelEntry, path: Path, context: dict[str, Any],
                         defaults: dict[str, Any]) -> list[ChannelBranch]:
        name = b.channel
        if name not in self.plugins.channels:
            raise self.error(path + ("channel",), _not_installed(name, self.plugins.channels.names()))
        retry, timeout = self.retry_and_timeout(b, path, defaults)
        made = []
        for ctx, note in self.items(b, path, context):
            options, faults, limit = self.options_and_faults(self.plugins.channels, name, b, ctx, path, note)
            data = self.render(b.data, ctx, path + ("data",), render_value, note)
            if not isinstance(data, dict):
                raise self.error(path + ("data",), f"expected a mapping, got {describe(data)}{note}")
            bad = not_json(data)
            if bad is not None:
                raise self.error(path + ("data", *bad[0]), f"{bad[1]}{note}")
            message = Message(
                to=self.render(b.to, ctx, path + ("to",), render_text, note),
                subject=self.render(b.subject, ctx, path + ("subject",), render_text, note)
                if b.subject is not None else None,
                body=self.render(b.body, ctx, path + ("body",), render_text, note),
                data=data,
            )
            channel = self.build(self.plugins.channels, name, options, faults,
                                 path + ("options",) if b.options else path + ("channel",), note)
            try:
                channel.validate(message)
            except ConfigError as exc:
                if exc.path:  # the key goes in front once, not again inside the text
                    raise self.error(path + exc.path, f"{exc.problem}{note}") from None
                raise self.error(path + _message_field(str(exc)), f"{exc}{note}") from None
            branch_id = self.branch_id(b.id, ctx, path, default=name if not note else ctx["item"], note=note)
            made.append(ChannelBranch(id=branch_id, channel=name, message=message, options=_with_limit(options, limit),
                                      faults=faults, retry=retry, timeout=timeout))
        return made

    def image_branches(self, b: ImageEntry, path: Path, context: dict[str, Any],
                       defaults: dict[str, Any]) -> list[ImageBranch]:
        name = b.image
        if name not in self.plugins.image_providers:
            raise self.error(path + ("image",), _not_installed(name, self.plugins.image_providers.names()))
        retry, timeout = self.retry_and_timeout(b, path, defaults)
        made = []
        for ctx, note in self.items(b, path, context):
            options, faults, limit = self.options_and_faults(self.plugins.image_providers, name, b, ctx, path, note)
            if b.style is not None:
                style = self.render(b.style, ctx, path + ("style",), render_text, note)
            elif note and isinstance(ctx["item"], str):
                style = ctx["item"]
            else:
                raise self.error(path + ("style",), "required (or fan out over styles with for_each, "
                                                    "whose item is then the style)")
            if not STYLE_NAME.match(style):
                raise self.error(path + ("style",), f"{style!r} is not a usable style name ({STYLE_RULE}; "
                                                    f"it names the image file){note}")
            prompt = self.render(b.prompt, ctx, path + ("prompt",), render_text, note)
            if not prompt.strip():
                raise self.error(path + ("prompt",), f"must not be empty{note}")
            seed = self.render(b.seed, ctx, path + ("seed",), render_value, note)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise self.error(path + ("seed",), f"expected a whole number, got {describe(seed)}{note}")
            size = self.render(b.size, ctx, path + ("size",), render_value, note)
            try:
                width, height = parse_size(size)
            except ConfigError as exc:
                raise self.error(path + ("size",), f"{str(exc).removeprefix('size: ')}{note}") from None
            self.build(self.plugins.image_providers, name, options, faults,
                       path + ("options",) if b.options else path + ("image",), note)
            branch_id = self.branch_id(b.id, ctx, path, default=style, note=note)
            request = ImageRequest(prompt=prompt, style=style, seed=seed, width=width, height=height)
            made.append(ImageBranch(id=branch_id, provider=name, request=request, options=_with_limit(options, limit),
                                    faults=faults, retry=retry, timeout=timeout))
        return made

    # ------------------------------------------------------------------ checks
    def render(self, value: Any, context: Mapping[str, Any], path: Path,
               how: Callable[[Any, Mapping[str, Any]], Any], note: str = "") -> Any:
        try:
            result = how(value, context)
        except TemplateError as exc:
            line = self.source.text_line(path, exc.line) if exc.line else self.source.line(path)
            raise SpecError(f"{exc}{note}", file=self.source.file, line=line, path=path) from None
        self.rendered += template_limits.measure(result)[0]
        if self.rendered > MAX_PLAN_SIZE:
            raise _noted(self.error(path, f"the plan would be larger than {MAX_PLAN_SIZE:,} characters in all "
                                          "(every branch's rendered text counted): make fewer branches "
                                          "(for_each items) or smaller ones, or fan out from Python"), note)
        return result

    def branch_id(self, template: str | None, context: dict[str, Any], path: Path, *, default: Any,
                  note: str) -> str:
        if template is not None:
            value = self.render(template, context, path + ("id",), render_text, note)
        elif isinstance(default, (str, int)) and not isinstance(default, bool):
            value = str(default)
        else:
            raise self.error(path + ("for_each",), "its items are not names, so give the branch an id template "
                                                   "such as id: \"{{ item.name }}\"")
        if not BRANCH_ID.match(value):
            raise self.error(path + ("id",), f"{value!r} is not a usable branch id ({BRANCH_ID_RULE}){note}")
        own = _own_form(f"{context['run']['id']}.{value}")
        if own is not None:
            raise self.error(path + ("id",), f"branch id {value!r} {own}; give the branch another id{note}")
        return str(value)

    def check_options(self, registry: Any, name: str, options: Any, path: Path, note: str) -> None:
        if not isinstance(options, dict):
            raise self.error(path, f"expected a mapping of {name} options, got {describe(options)}{note}")
        try:
            registry.options(name, options, where=format_path(path))
        except ConfigError as exc:
            raise _noted(self.source.relocate(exc, path), note) from None

    def check_faults(self, faults: Any, path: Path, note: str) -> None:
        if faults is None:
            return
        try:
            structure_options(Faults, faults, where=format_path(path))
        except ConfigError as exc:
            raise _noted(self.source.relocate(exc, path), note) from None

    def build(self, registry: Any, name: str, options: dict[str, Any], faults: Any, path: Path, note: str) -> Any:
        key = json.dumps([registry.kind, name, options, faults], sort_keys=True, default=str)
        if key not in self.built:
            try:
                self.built[key] = with_faults(registry.build(name, options, where=format_path(path)), faults)
            except ConfigError as exc:
                raise _noted(self.source.relocate(exc, path), note) from None
        return self.built[key]

    def retry(self, data: Any, path: Path) -> dict[str, Any] | None:
        if data is None:
            return None
        try:
            from_config(data, plugins=self.plugins, where=format_path(path))
        except ConfigError as exc:
            raise self.source.relocate(exc, path) from None
        return {"policy": data} if isinstance(data, str) else dict(data)

    def check_store(self, url: str) -> None:
        name, _ = parse_store_url(url)
        if name not in self.plugins.stores:
            raise self.error(("store",), f"{redact_url(url)!r} names store {name!r}, which is not installed "
                                         f"(installed: {', '.join(self.plugins.stores.names())})")

    def seconds(self, value: float | None, path: Path) -> float | None:
        if value is not None and value <= 0:
            raise self.error(path, f"must be more than 0 seconds, got {value:g}")
        return value

    def duration(self, value: Any, path: Path) -> float | None:
        """Seconds, more than 0, written as a number of seconds or as text such as ``30s``, ``5m``, ``1h30m``."""
        if value is None:
            return None
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ConfigError:
                raise self.error(path, f"{value!r} is not a duration: write a number of seconds, or a number and "
                                       "a unit (30s, 5m, 1h30m, 1d)") from None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                seconds = float(value)
            except OverflowError:  # a whole number past a float's range (some 309 digits)
                raise self.error(path, f"too large a number of seconds (a whole number of {len(str(abs(value)))} "
                                       "digits)") from None
        else:
            raise self.error(path, f"expected a duration (a number of seconds, or text such as 30s or 5m), "
                                   f"got {describe(value)}")
        try:
            check_finite(seconds)  # .nan would pass "> 0"; .inf is no deadline: leave it out
        except ValueError as exc:
            raise self.error(path, str(exc)) from None
        return self.seconds(seconds, path)

    def positive(self, value: int | None, path: Path) -> int | None:
        if value is not None and value < 1:
            raise self.error(path, f"must be 1 or more, got {value}")
        return value


def _run_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a pipeline's run id, or ``None`` when it can."""
    if not value.strip() or len(value) > 200 or "" in value.split("/") or any(map(not_in_a_run_id, value)):
        return (f"{value!r} is not a usable run id (1-200 characters, no spaces, control characters or lone "
                "surrogates, no empty part between slashes: did an input come out empty?)")
    first_step = f"{value}.{RESERVED[0]}"  # every run stores it before anything else
    if OWN_ID.search(first_step):
        return (f"{value!r} is not a usable run id: its step {first_step!r} would have the form of vow's own "
                f"bookkeeping ids ({OWN_ID_FORMS}); a run id cannot end in .patched")
    return None


def _own_form(promise_id: str) -> str | None:
    """What is wrong with ``promise_id`` when it has the form of vow's own timers and markers (the engine
    would fail its call when the run reaches it), or ``None`` when it has not."""
    if OWN_ID.search(promise_id) is None:
        return None
    return (f"makes promise {promise_id!r}, which has the form of vow's own bookkeeping ids ({OWN_ID_FORMS}): "
            "no id may end in .backoff.N, .throttle.N.M or .patched.NAME")


def _with_limit(options: dict[str, Any], limit: dict[str, Any] | None) -> dict[str, Any]:
    """A branch's options as the leaf gets them: the rate limit rides along under ``rate_limit``
    (``deliver`` and ``generate_image`` take it out before building the plugin)."""
    return {**options, "rate_limit": limit} if limit is not None else options


def _noted(error: SpecError, note: str) -> SpecError:
    if not note:
        return error
    return SpecError(error.problem + note, file=error.file, line=error.line, path=error.path)


def _duplicate_at(path: Path, first: Path) -> Path:
    """Where a duplicate made by the entry at ``path`` is reported: its ``for_each`` when the first
    one came from the same entry (two equal items), else the entry itself."""
    return path + ("for_each",) if first[:len(path)] == path else path


def _not_installed(name: str, installed: list[str]) -> str:
    return f"{name!r} is not installed (installed: {', '.join(installed) or 'none'})"


_FIELD = re.compile(r"\bmessage[ .](to|subject|body|data)\b")


def _message_field(problem: str) -> Path:
    """The message key a channel's validation error is about, when it names one."""
    match = _FIELD.search(problem)
    return (match.group(1),) if match else ()
