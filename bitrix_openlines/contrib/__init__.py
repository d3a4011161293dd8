"""Integrations with other libraries, each in its own module, imported only when used.

* :mod:`bitrix_openlines.contrib.aiohttp`: turn an aiohttp request into a verified event;
  share one ``aiohttp.ClientSession`` between a web app and the SDK.
* :mod:`bitrix_openlines.contrib.redis`: the rate limit and the tokens shared through Redis
  (the ``redis`` extra).
"""
