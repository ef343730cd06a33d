"""The browser console for auditors and admins, under /console (docs/console.md).

    settings.py  console.* settings
    session.py   the signed session cookie (who signed in, CSRF token, expiry) and sign-in form tokens
    web.py       the frame: sign-in/out, the guard every page passes, rendering, security headers
    pages.py     audit search and record, chargeback, queue and kill, access requests, policy explain
    chart.py     chargeback lines -> bar geometry for inline SVG
    routes.py    the routes, mounted by gateway/app.py
"""
