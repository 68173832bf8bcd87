"""The synthetic corpus as a recipe: generated with eSpeak NG (no source folder), word units."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from harness.atomic import write_json

from ..errors import DataError
from ..recipe import Context, Layout, Recipe


class SyntheticRecipe(Recipe):
    name = "synthetic"
    takes_src = False
    test_splits = ("test", "test_held_out")

    def identity(self, src: Optional[Path], opts) -> dict[str, Any]:
        if src is not None:
            raise DataError("the synthetic corpus is generated; it takes no source directory "
                            "(--src, data.src_dir)")
        from .tiers import DEFAULT_TIER, get_tier

        get_tier(opts.tier or DEFAULT_TIER, hours=opts.hours, voices=opts.voices)
        return {"tier": opts.tier or DEFAULT_TIER, "hours": opts.hours, "voices": opts.voices, "seed": opts.seed}

    def train_hours(self, options: dict[str, Any]) -> Optional[tuple[float, str]]:
        from .tiers import get_tier

        hours = options.get("hours") or get_tier(options.get("tier", "easy")).train_hours
        factor = 3 if options.get("speed_perturb", True) else 1
        return float(hours) * factor, "synthetic tier size (not prepared yet)"

    def manifests(self, ctx: Context, opts) -> Layout:
        from .corpus import SPLITS, build_manifests, corpus_summary, plan_corpus, synthesize, write_transcripts
        from .tiers import DEFAULT_TIER, get_tier

        layout = Layout(train_parts=["train"], eval_parts=["dev", "test", "test_held_out"], valid="dev",
                        tests=["test", "test_held_out"], unit="word")
        summary_path = ctx.out / "corpus.json"
        if all(ctx.have(s) for s in SPLITS) and summary_path.is_file():
            layout.info = json.loads(summary_path.read_text())
            return layout
        tier = get_tier(opts.tier or DEFAULT_TIER, hours=opts.hours, voices=opts.voices)
        plan, speakers = plan_corpus(tier, opts.seed)
        parts = {s: s for s in SPLITS}
        root = ctx.out / "audio"
        with ctx.bar(sum(len(v) for v in plan.values()), "synthesize (eSpeak NG)") as bar:
            lengths = synthesize(plan, root, parts, num_jobs=ctx.num_jobs, progress=bar.update)
        write_transcripts(plan, root, parts)
        for split in SPLITS:
            recs, sups = build_manifests(plan[split], root, split, lengths)
            ctx.save(split, recs, sups)
        layout.info = corpus_summary(tier, opts.seed, plan, speakers, lengths)
        write_json(summary_path, layout.info)
        return layout

    def finish(self, out: Path, info: dict[str, Any]) -> None:
        write_json(out / "corpus.json", info)


RECIPE = SyntheticRecipe()
