"""What a Dhan disconnect reason means for the feed (dhan-protocol.md §2.8): retry, cool off, or stop."""
from __future__ import annotations

COOL_OFF = 805  # too many connections / requests: wait before trying again, or it gets worse

# Reasons no reconnect can fix: the message says what is wrong and how to fix it.
FATAL: dict[int, str] = {
    806: "Dhan says Data APIs are not subscribed on this account (806): subscribe to the "
         "Data API plan at web.dhan.co (My Profile > DhanHQ Trading APIs), then start the feed again",
    807: "the access token has expired (807): generate a new one at web.dhan.co "
         "(My Profile > Access DhanHQ APIs) and put it in DHAN_ACCESS_TOKEN in .env",
    808: "Dhan rejected the credentials (808, authentication failed): check DHAN_CLIENT_ID and "
         "DHAN_ACCESS_TOKEN in .env (the token must belong to that client id)",
    809: "the access token is invalid (809): copy the whole token again from web.dhan.co "
         "(My Profile > Access DhanHQ APIs) into DHAN_ACCESS_TOKEN in .env",
    810: "the client id is invalid (810): set DHAN_CLIENT_ID in .env to your Dhan client id "
         "(a number such as 1000000001, shown in web.dhan.co > My Profile)",
}

_OTHER = {800: "Dhan internal server error", 804: "too many instruments requested",
          811: "invalid expiry date", 812: "invalid date format", 813: "invalid security id",
          814: "invalid request"}


def describe(reason: int) -> str:
    """One line for the log, for any reason code."""
    if reason in FATAL:
        return FATAL[reason]
    if reason == COOL_OFF:
        return "too many connections or requests (805): cooling off before reconnecting"
    return f"{_OTHER.get(reason, 'unknown reason')} ({reason})"
