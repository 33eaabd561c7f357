"""Benchmark of dedupe: clusters 1k, 10k and 100k synthetic sightings through ``ingest.dedupe.Clusterer``.

A plain script (not collected by pytest):

    .venv/bin/python tests/benchmarks/bench_dedupe.py [--sizes 1000 10000 100000] [--seed 7] [--no-memory]
        [--no-freeze]

The generator writes oncology stories (titles from templates over diseases, drugs and meetings; 10 to 40-word blurbs
naming a speaker) and copies of them the way sources repeat them: exact rail copies, truncated blurbs ("..." and
"…"), " | Site" suffixes with a feed timestamp a time zone away, case and quote and entity changes, undated copies,
article pages with their teasers, cross-posts sharing a link, typos; plus traps that must stay apart: recap series
reusing a title months apart, and titles extending another. It knows the true story of every sighting, so each run
reports pairwise precision and recall as well as time (CPU seconds of this process, and wall; the fastest of
--repeat runs) and peak memory (tracemalloc, in a separate, untimed pass). While timing, the generated input is
frozen out of the garbage collector (``gc.freeze``), so the collector's walks over the generator's objects are not
counted as clustering (``--no-freeze`` counts them).
The span of dates grows with the count (PER_DAY sightings a day), as it does for a running service.
Targets (issue 4): 100k in under 10 s; ten times the sightings for at most fifteen times the time.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest import dedupe  # noqa: E402
from ingest.core.text import headline  # noqa: E402
from ingest.dedupe import Clusterer, MatchInput, match  # noqa: E402
from scripts.dedupe_quality import pairwise  # noqa: E402

DISEASES = """Metastatic Castration-Resistant Prostate Cancer|Metastatic Castration-Sensitive Prostate Cancer|
HER2-Positive Breast Cancer|HR-Positive, HER2-Negative Breast Cancer|Triple-Negative Breast Cancer|
EGFR-Mutated Non-Small Cell Lung Cancer|ALK-Positive Non-Small Cell Lung Cancer|Extensive-Stage Small Cell Lung Cancer|
Relapsed Multiple Myeloma|Transplant-Ineligible Multiple Myeloma|Large B-Cell Lymphoma|Follicular Lymphoma|
Mantle Cell Lymphoma|Marginal Zone Lymphoma|Chronic Lymphocytic Leukemia|Acute Myeloid Leukemia|
Myelodysplastic Syndromes|Myelofibrosis|Hepatocellular Carcinoma|Biliary Tract Cancer|Pancreatic Adenocarcinoma|
Gastric and Gastroesophageal Junction Cancer|Microsatellite-Stable Colorectal Cancer|
BRAF V600E-Mutated Colorectal Cancer|Advanced Melanoma|Resectable Melanoma|Clear Cell Renal Cell Carcinoma|
Urothelial Carcinoma|Advanced Endometrial Cancer|
Platinum-Resistant Ovarian Cancer|Cervical Cancer|Head and Neck Squamous Cell Carcinoma|Glioblastoma|
Soft Tissue Sarcoma|Pleural Mesothelioma|Differentiated Thyroid Cancer|Neuroendocrine Tumors|
Gastrointestinal Stromal Tumors|Merkel Cell Carcinoma|Cutaneous Squamous Cell Carcinoma""".replace("\n", "").split("|")

DRUGS = """Trastuzumab Deruxtecan|Sacituzumab Govitecan|Datopotamab Deruxtecan|Enfortumab Vedotin|Osimertinib|
Amivantamab|Lorlatinib|Pembrolizumab|Nivolumab|Durvalumab|Atezolizumab|Cemiplimab|Tislelizumab|Teclistamab|
Elranatamab|Talquetamab|Daratumumab|Zanubrutinib|Acalabrutinib|Pirtobrutinib|Venetoclax|Olaparib|Talazoparib|
Niraparib|Lutetium Lu 177 Vipivotide Tetraxetan|Darolutamide|Enzalutamide|Apalutamide|Tucatinib|Ribociclib|
Abemaciclib|Capivasertib|Elacestrant|Inavolisib|Glofitamab|Epcoritamab|Mosunetuzumab|Axicabtagene Ciloleucel|
Lisocabtagene Maraleucel|Ciltacabtagene Autoleucel|Tarlatamab|Selpercatinib|Sotorasib|Adagrasib|Fruquintinib|
Zolbetuximab|Tebentafusp|Relatlimab|Lenvatinib|Cabozantinib|Belzutifan|Mirvetuximab Soravtansine|Luspatercept|
Imetelstat|Momelotinib|Revumenib|Ivosidenib|Gilteritinib|Quizartinib|Azacitidine""".replace("\n", "").split("|")

SETTINGS = """First-Line|Second-Line|Maintenance|Neoadjuvant|Adjuvant|Perioperative|Relapsed or Refractory|
Older Adults With|Community Practice|Real-World|Frontline|Later-Line|High-Risk|Newly Diagnosed|Previously Treated|
Biomarker-Selected""".replace("\n", "").split("|")

MEETINGS = ["ASCO", "ESMO", "ASH", "SABCS", "AACR", "ASTRO", "ACRO", "SNMMI", "EHA", "WCLC", "ASCO GU", "ASCO GI"]

TEMPLATES = [
    "{drug} Shows Durable Responses in {setting} {disease}",
    "FDA Approves {drug} for {setting} {disease}",
    "FDA Grants Priority Review to {drug} in {disease}",
    "{meeting} {year}: {drug} Improves Survival in {setting} {disease}",
    "{meeting} {year}: Updated Data for {drug} in {disease}",
    "Expert Perspectives on Sequencing {drug} in {setting} {disease}",
    "Managing Toxicities of {drug} in {disease}",
    "Real-World Outcomes With {drug} in {setting} {disease}",
    "Biomarker Testing Guides Use of {drug} in {disease}",
    "How {drug} Is Changing {setting} Care in {disease}",
    "Case Study: {drug} for a Patient With {setting} {disease}",
    "{drug} Plus Chemotherapy Reshapes {setting} {disease}",
    "Phase 3 Trial of {drug} Meets Primary End Point in {disease}",
    "Optimizing Dosing of {drug} in {setting} {disease}",
    "Prolaris, CCR and Genomic Risk Tools Alongside {drug} in {disease}",
    "Recent Advances in the Treatment of {setting} {disease}",
    "Emerging Data on {drug} and {drug2} in {disease}",
    "Comparing {drug} With {drug2} in {setting} {disease}",
    "Quality of Life With {drug} in {disease}: What Patients Report",
]
SERIES = [
    "Recap: Case-Based Roundtable on {setting} {disease}",
    "Recap: Community Oncology Connections on {setting} {disease}",
    "Recap: Peer Exchange on {setting} {disease}",
]
SERIES_MAX = 12  # episodes under one title
EXTENSIONS = ["and Brain Metastases", "in Older Adults", "After Progression on Immunotherapy", "and Bone Health"]

FIRST = """Sara|Stefania|Ruta|Steven|Alvaro|Andrew|Rana|Alicia|Daniel|Helena|Virginia|Joshua|Priya|Mehmet|Elena|Hope|
Ajai|Nina|Marcus|Wei|Yuki|Carlos|Fatima|Jonathan|Rachel|Thomas|Grace|Kevin|Leila|Omar|Sandra|Paolo|Ingrid|Rafael|
Benjamin|Lauren|Tiffany|Ravi|Marta|Julia""".replace("\n", "").split("|")
LAST = """Hurvitz|Maraka|Rao|Finkelstein|Martinez|Armstrong|McKay|Morgans|Petrylak|Yu|Borges|Brody|Sharma|Kocak|Garcia|
Rugo|Chari|Shah|Weiss|Zhang|Tanaka|Ramirez|Haddad|Levy|Carter|Nguyen|Patel|Kim|Okafor|Lopez|Schwartz|Rossi|
Lindqvist|Costa|Adams|Murphy|Bardia|Iyer|Novak|Klein|Fischer|Oliveira|Singh|Cohen|Park""".replace("\n", "").split("|")
DEGREES = ["MD", "MD, PhD", "MD, MPH", "MD, MSc", "DO", "MD, FACP", "PharmD", "MD, MMSc"]
VERBS = ["discusses", "explains", "reviews", "highlights", "describes", "outlines", "shares", "examines"]
ASPECTS = """patient selection and treatment sequencing|managing adverse events in older adults|
the role of circulating tumor DNA in monitoring response|insurance barriers and access in community practice|
dose modifications that preserve efficacy|how to combine the agent with radiation therapy|
data from the pivotal phase 3 trial and its subgroups|quality-of-life outcomes reported by patients|
what the results mean for first-line decision-making|biomarker testing before starting treatment|
the evidence for treatment de-escalation|cost and value considerations|
central nervous system activity and brain metastases|resistance mechanisms and what comes next|
cardiac monitoring during therapy|the management of infusion reactions and cytokine release syndrome|
how to talk with patients about goals of care|the logistics of step-up dosing|
lessons from real-world registries|ongoing trials that may change practice""".replace("\n", "").split("|")
CLAUSES = [
    "drawing on recent clinical trial data",
    "with practical advice for community oncologists",
    "and how multidisciplinary teams can coordinate care",
    "in light of updated guideline recommendations",
    "based on experience at a high-volume academic center",
    "while noting the questions that remain open",
    "and the implications for survivorship planning",
]
SITES = ["OncLive", "Targeted Oncology", "CancerNetwork", "Oncology Nursing News", "Urology Times"]
START = datetime(2021, 1, 1, tzinfo=UTC)
MIN_CUT = dedupe.MIN_EVIDENCE_WORDS  # a truncated blurb keeps at least this many words
BLURB_KEEP = 9  # an edited blurb keeps its opening words
PER_DAY = 60  # sightings a day: dozens of feeds and saved pages; the span grows with the count, as in a deployment


@dataclass(frozen=True, slots=True)
class Story:
    truth: int
    title: str
    date: datetime
    blurb: str
    slug: str


class Generator:
    """Synthetic sightings and their true stories."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used_titles: set[str] = set()
        self.series_next: dict[str, datetime] = {}  # a series title -> when its next episode may air
        self.series_episodes: dict[str, int] = {}
        self.sightings: list[MatchInput] = []
        self.truth: dict[int, int] = {}
        self.stories = 0
        self.days = 30

    def person(self) -> str:
        r = self.rng
        return f"{r.choice(FIRST)} {chr(r.randrange(65, 91))}. {r.choice(LAST)}, {r.choice(DEGREES)}"

    def blurb(self, disease: str, drug: str) -> str:
        r = self.rng
        text = f"{self.person()} {r.choice(VERBS)} {r.choice(ASPECTS)} with {drug.lower()} in {disease.lower()}"
        for clause in r.sample(CLAUSES, r.randrange(0, 3)):
            text += f", {clause}"
        words = text.split()
        return " ".join(words[:40]) + "."

    def fill(self, template: str) -> tuple[str, str, str]:
        r = self.rng
        disease, drug, drug2 = r.choice(DISEASES), r.choice(DRUGS), r.choice(DRUGS)
        title = template.format(
            drug=drug,
            drug2=drug2,
            disease=disease,
            setting=r.choice(SETTINGS),
            meeting=r.choice(MEETINGS),
            year=r.randrange(2021, 2026),
        )
        return title, disease, drug

    def new_story(self, title: str, disease: str, drug: str, date: datetime | None = None) -> Story:
        self.stories += 1
        when = date or START + timedelta(days=self.rng.randrange(self.days))
        return Story(self.stories, title, when, self.blurb(disease, drug), f"story-{self.stories}")

    def unique_title(self, template: str | None = None) -> tuple[str, str, str]:
        for _ in range(1000):
            title, disease, drug = self.fill(template or self.rng.choice(TEMPLATES))
            if title not in self.used_titles:
                self.used_titles.add(title)
                return title, disease, drug
        raise RuntimeError("the templates ran out of distinct titles: add vocabulary")

    def emit(self, story: Story, **fields: object) -> None:
        sid = len(self.sightings) + 1
        values: dict[str, object] = {
            "kind": "teaser",
            "title": story.title,
            "title_derived": False,
            "published": story.date,
            "summary": story.blurb,
            "link": None,
            "source": f"page-{self.rng.randrange(5000)}.txt",
        }
        values.update(fields)
        self.sightings.append(MatchInput(id=sid, **values))  # type: ignore[arg-type]
        self.truth[sid] = story.truth

    def copies(self, story: Story) -> None:
        """The first sighting of a story, then its copies: about 0.9 more on average."""
        r = self.rng
        self.emit(story)
        for _ in range(min(6, int(r.expovariate(1 / 0.9)))):
            kind = r.random()
            if kind < 0.35:
                self.emit(story)  # the same teaser on another page's rail
            elif kind < 0.5:
                words = story.blurb.split()
                cut = r.randrange(MIN_CUT, max(MIN_CUT + 1, len(words)))
                self.emit(story, summary=" ".join(words[:cut]) + r.choice(["...", "…", " [...]"]))
            elif kind < 0.65:
                offset = timedelta(hours=r.randrange(-20, 30))
                self.emit(
                    story,
                    kind="entry",
                    title=f"{story.title} | {r.choice(SITES)}",
                    published=story.date + offset,
                    link=f"https://www.{r.choice(SITES).replace(' ', '').lower()}.com/view/{story.slug}",
                    source="https://feeds.example/rss",
                )
            elif kind < 0.75:
                self.emit(story, title=_perturb(r, story.title), summary=_perturb(r, story.blurb))
            elif kind < 0.82:
                self.emit(story, published=None)
            elif kind < 0.9:  # a typo in the title, a word edited out of the blurb, a feed's timestamp
                words = story.blurb.split()
                del words[r.randrange(BLURB_KEEP, len(words) - 1)]
                self.emit(
                    story,
                    title=_typo(r, story.title),
                    summary=" ".join(words),
                    published=story.date + timedelta(hours=r.randrange(-12, 36)),
                )
            else:  # the site's entry, and a partner's retitled cross-post of it sharing its link
                link = f"https://www.onclive.com/view/{story.slug}"
                self.emit(story, kind="entry", link=link, published=story.date + timedelta(hours=14))
                self.emit(
                    story,
                    kind="entry",
                    title=f"Partner View: {self.unique_title()[0]}",
                    summary="Cross-posted: " + self.blurb(r.choice(DISEASES), r.choice(DRUGS)),
                    published=story.date + timedelta(days=r.randrange(0, 4)),
                    link=f"https://OncLive.com/view/{story.slug}/?utm_source=partner",
                    source="https://partner.example/feed",
                )

    def article(self, story: Story) -> None:
        """A page's article (headline unknown: titled from its standfirst), teased with the standfirst."""
        derived = headline(story.blurb)
        self.emit(story, kind="article", title=derived, title_derived=True, published=None)

    def generate(self, n: int) -> tuple[list[MatchInput], dict[int, int]]:
        r = self.rng
        self.days = max(7, n // PER_DAY)
        while len(self.sightings) < n:
            roll = r.random()
            if roll < 0.06:  # a recap series: one title, episodes months apart, different blurbs
                title, disease, drug = self.fill(r.choice(SERIES))
                if self.series_episodes.get(title, 0) >= SERIES_MAX:
                    continue
                when = self.series_next.get(title) or START + timedelta(days=r.randrange(self.days))
                for _ in range(r.randrange(2, 5)):
                    self.copies(self.new_story(title, disease, drug, when))
                    when += timedelta(days=r.randrange(45, 200))
                    self.series_episodes[title] = self.series_episodes.get(title, 0) + 1
                self.series_next[title] = when
            elif roll < 0.1:  # a title and its extension, with other dates and blurbs: two stories
                title, disease, drug = self.unique_title("Updates on {drug} in {setting} {disease}")
                extended = f"{title} {r.choice(EXTENSIONS)}"
                self.used_titles.add(extended)
                self.copies(self.new_story(title, disease, drug))
                self.copies(self.new_story(extended, disease, drug))
            elif roll < 0.2:  # a page's article and its teasers
                story = self.new_story(*self.unique_title())
                self.article(story)
                self.copies(story)
            else:
                self.copies(self.new_story(*self.unique_title()))
        order = self.sightings[:n]
        r.shuffle(order)
        return order, {m.id: self.truth[m.id] for m in order}


def _perturb(r: random.Random, text: str) -> str:
    """What scrapes do to text: case, curly quotes, entities, non-breaking spaces, double spaces."""
    choice = r.randrange(5)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return text.replace("'", "\u2019").replace("-", "\u2011")
    if choice == 2:
        return text.replace("&", "&amp;").replace(" ", "&nbsp;", 2)
    if choice == 3:
        return text.replace(" ", "\u00a0", 3)
    return "  ".join(text.split(" "))


def _typo(r: random.Random, title: str) -> str:
    words = title.split()
    candidates = [i for i, w in enumerate(words) if len(w) > 5 and w.isalpha()]
    if not candidates:
        return title + "."
    i = r.choice(candidates)
    w = words[i]
    j = r.randrange(1, len(w) - 1)
    words[i] = w[:j] + w[j + 1 :]  # a dropped letter
    return " ".join(words)


def run(sightings: list[MatchInput]) -> list[list[int]]:
    clusterer = Clusterer()
    for m in sightings:
        clusterer.add(m)
    return clusterer.clusters()


def _clear_caches() -> None:
    match._trigrams.cache_clear()
    match._near_subsets.cache_clear()
    match._rank.cache_clear()
    gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dedupe benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size; the fastest is reported")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument(
        "--no-freeze", action="store_true", help="leave the generated input to the garbage collector while timing"
    )
    args = parser.parse_args(argv)

    print(
        f"{'sightings':>10} {'stories':>8} {'dup share':>9} {'clusters':>8} {'cpu s':>8} {'wall s':>8} {'us/item':>8} "
        f"{'peak MiB':>9} {'precision':>9} {'recall':>7}"
    )
    times: dict[int, float] = {}
    ok = True
    for n in args.sizes:
        sightings, truth = Generator(args.seed).generate(n)
        stories = len(set(truth.values()))
        runs = []
        for _ in range(max(1, args.repeat)):  # the fastest of a few: other processes only ever add time
            _clear_caches()
            if not args.no_freeze:
                gc.freeze()  # the generator's objects are not the clusterer's: keep the collector from walking them
            start, cpu = time.perf_counter(), time.process_time()
            clusters = run(sightings)
            runs.append((time.process_time() - cpu, time.perf_counter() - start))
            gc.unfreeze()
        elapsed, wall = min(runs)
        times[n] = elapsed
        peak = float("nan")
        if not args.no_memory:
            _clear_caches()
            tracemalloc.start()
            run(sightings)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        scores = pairwise(clusters, truth)
        print(
            f"{n:>10,} {stories:>8,} {1 - stories / n:>9.1%} {len(clusters):>8,} {elapsed:>8.2f} {wall:>8.2f} "
            f"{elapsed / n * 1e6:>8.1f} {peak:>9.1f} {scores.precision:>9.4f} {scores.recall:>7.4f}"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:.0f} MiB (generator included)")
    sizes = sorted(times)
    for small, big in itertools.pairwise(sizes):
        ratio = times[big] / times[small]
        factor = big / small
        limit = 1.5 * factor
        verdict = "ok" if ratio <= limit else "OVER"
        ok = ok and ratio <= limit
        print(f"{factor:.0f}x sightings ({small:,} -> {big:,}): {ratio:.1f}x time (target <= {limit:.0f}x) {verdict}")
    if 100_000 in times:
        verdict = "ok" if times[100_000] < 10 else "OVER"
        ok = ok and times[100_000] < 10
        print(f"100,000 sightings in {times[100_000]:.2f} s (target < 10 s) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
