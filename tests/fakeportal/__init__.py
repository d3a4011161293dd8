"""Tests of the fake Bitrix24 portal (``bitrix_openlines.testing``), over real sockets."""
