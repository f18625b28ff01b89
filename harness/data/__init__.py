"""CDD-11 data: the synthetic generator (`synth`), the embedded default set (`mini`) and the reader."""
