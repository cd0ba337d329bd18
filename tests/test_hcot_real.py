"""The 1,000 released FUSAR-GEOVL captions parse into our schema; the fill report counts their dimensions."""

import pytest

from klip_lib.hcot.real_captions import fill_report, load_real_captions
from klip_lib.vocab import CAPTION_DIMENSIONS, LANDFORM_DIMENSIONS


@pytest.mark.real_data
def test_real_captions_parse_and_fill(real_data_dir):
    records = load_real_captions(real_data_dir)
    assert len(records) == 1000 and records[0]["tile_id"] == "fusar_geovl_0"
    assert records[0]["Terrain"].startswith("The terrain is classified as")
    assert all(r[d] is None for r in records for d in CAPTION_DIMENSIONS[8:])
    report = fill_report(records)
    assert report["dimensions_filled"] == {8: 1000}
    assert report["filled_per_dimension"] == {d: 1000 for d in LANDFORM_DIMENSIONS}
    assert report["checkable_per_dimension"]["Terrain"] == 1000
    assert report["checkable_per_dimension"]["Water"] >= 990


def test_placeholders_do_not_count_and_missing_file_is_named(tmp_path):
    path = tmp_path / "caps.json"
    path.write_text('[{"image_id": 7, "Terrain": "The terrain is classified as plain", "Water": "N/A", '
                    '"Roads": ""}]')
    [rec] = load_real_captions(path)
    assert rec["Terrain"] and rec["Water"] is None and rec["Roads"] is None
    assert fill_report([rec])["dimensions_filled"] == {1: 1}
    with pytest.raises(FileNotFoundError, match="no released captions here"):
        load_real_captions(tmp_path / "nothing")
