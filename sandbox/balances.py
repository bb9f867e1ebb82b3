"""Moving money in and out of an account's two wallets."""

from __future__ import annotations

from decimal import Decimal

from sandbox.errors import FieldError, InsufficientBalanceError
from sandbox.models import Account, Order, Recipient, Wallet
from sandbox.money import ZERO, format_amount


def cost(recipient: Recipient) -> Decimal:
    """What the recipient's whole entitlement costs the merchant, fee included."""
    return recipient.wallet_amount + recipient.fx_fee_amount


def available(account: Account, wallet: Wallet, currency: str) -> Decimal:
    return account.pot(wallet).get(currency, ZERO)


def take(account: Account, wallet: Wallet, currency: str, amount: Decimal) -> None:
    """Debit ``amount`` or raise ``InsufficientBalanceError`` and change nothing."""
    balance = available(account, wallet, currency)
    if balance < amount:
        raise InsufficientBalanceError(
            f"Insufficient balance: the order needs {currency} {format_amount(amount, currency)},"
            f" the {wallet.value} wallet has {currency} {format_amount(balance, currency)}",
            [FieldError("wallet_currency", "insufficient balance", "insufficient_balance")],
        )
    account.pot(wallet)[currency] = balance - amount


def release(account: Account, order: Order, recipient: Recipient) -> None:
    """Give the recipient's unconsumed gift-card reservation back to the main wallet."""
    held = recipient.held(order.wallet_currency)
    if held:
        pot = account.balances
        pot[order.wallet_currency] = pot.get(order.wallet_currency, ZERO) + held
        recipient.released += held
