#!/usr/bin/env python3
"""Generate the sample X200 user guide PDF used by the demo.

The PDF has one page per (heading, paragraphs) entry in ``X200_PAGES``. Output
is deterministic: the creation date is fixed and fpdf2 writes no random IDs,
so rerunning the script produces a byte-identical file.

Usage:
    python scripts/make_sample_pdf.py [OUTPUT_PATH]

OUTPUT_PATH defaults to ``data/x200-user-guide.pdf`` under the repository root.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "data" / "x200-user-guide.pdf"
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)

Page = tuple[str, Sequence[str]]

X200_PAGES: list[Page] = [
    (
        "X200 Portable Projector - Overview",
        [
            "Thank you for choosing the Northwind Devices X200 Portable Projector. "
            "The X200 is designed for presentations, classrooms and movie nights "
            "wherever you go. It delivers a bright image of 600 lumens at a native "
            "resolution of 1280 x 720 pixels and accepts 1080p input signals.",
            "Weighing only 1.2 kg and measuring 21 x 15 x 6 cm, the X200 fits easily "
            "into a laptop bag. The built-in rechargeable battery provides up to "
            "2.5 hours of playback in Eco mode, and the integrated 5 W speaker means "
            "you do not need external audio for small rooms.",
            "The LED light source is rated for 20,000 hours of use, so under normal "
            "conditions you will never need to replace it. The package contains the "
            "projector, a 65 W USB-C power adapter, an HDMI cable, a remote control "
            "with two AAA batteries, a soft carrying pouch and this guide.",
        ],
    ),
    (
        "Setup and Connections",
        [
            "Place the X200 on a stable, flat surface between 1 and 4 metres from "
            "the screen or wall. At a distance of 2 metres the projected image is "
            "about 60 inches wide (diagonal). Remove the lens cap and press and hold "
            "the power button for two seconds to switch the projector on.",
            "Connect your laptop, game console or streaming stick to the HDMI port "
            "on the rear panel. Computers with a USB-C port that supports DisplayPort "
            "Alternate Mode can be connected with a single USB-C cable, which carries "
            "both video and audio. The USB-A port supplies 5 V / 1 A to power a "
            "streaming stick.",
            "If the image looks like a trapezoid, use the keystone correction. The "
            "X200 corrects vertical keystone automatically; horizontal keystone can "
            "be adjusted by hand in Settings > Image > Keystone by up to +/- 30 "
            "degrees. Turn the focus ring next to the lens until text is sharp.",
        ],
    ),
    (
        "Warranty and Service",
        [
            "The X200 is covered by a limited warranty of 3 years (36 months) from "
            "the date of purchase. The warranty covers defects in materials and "
            "workmanship under normal use. It does not cover damage caused by drops, "
            "liquids, unauthorised repairs or use with non-approved power adapters.",
            "The built-in rechargeable battery is a consumable part and is covered "
            "for 12 months from the date of purchase. A battery that holds less than "
            "70 percent of its original capacity within this period will be replaced "
            "free of charge.",
            "To make a warranty claim, email service@northwind.example with your "
            "name, the serial number printed on the underside of the projector and "
            "a short description of the fault. Please keep your original receipt or "
            "invoice, because proof of purchase is required for every claim. Our "
            "service team will reply within two business days with shipping "
            "instructions.",
        ],
    ),
    (
        "Troubleshooting",
        [
            "No image: check that the correct input source (HDMI or USB-C) is "
            "selected with the Source button and that the cable is firmly connected. "
            "If the LED lamp indicator blinks red, the light source has failed to "
            "start; switch the projector off, wait one minute and try again.",
            "Overheating: the X200 shuts down automatically if its internal "
            "temperature becomes too high. Keep at least 30 cm of free space around "
            "the air vents, do not operate the projector on soft surfaces such as "
            "beds or sofas, and clean the vents regularly with a soft brush.",
            "Error code E42 means fan failure. The cooling fan is not spinning or is "
            "blocked, and the projector will turn itself off to protect the light "
            "source. Unplug the projector, check the vents for obstructions and "
            "restart it. If E42 appears again, contact Northwind service.",
        ],
    ),
]


def build_pdf(path: str | Path, pages: Sequence[Page]) -> Path:
    """Write a PDF with one page per (heading, [paragraphs]) entry to *path*.

    Uses the core Helvetica font, so all text must be Latin-1 encodable.
    Returns the output path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title("Northwind Devices - Sample Document")
    pdf.set_author("Northwind Devices")
    pdf.set_creator("make_sample_pdf.py")
    pdf.set_producer("fpdf2")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(20, 20, 20)

    for heading, paragraphs in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", style="B", size=18)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)

    pdf.output(str(path))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1:
        print(f"usage: {Path(__file__).name} [OUTPUT_PATH]", file=sys.stderr)
        return 2
    out = Path(argv[0]) if argv else DEFAULT_OUTPUT
    written = build_pdf(out, X200_PAGES)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
