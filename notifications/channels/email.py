"""Email through Django's mail framework: SMTP from the environment, the console backend by default."""

import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import make_msgid

from .base import ChannelBase, DeliveryError, DeliveryResult, Message


def owner_addresses() -> list[str]:
    return list(settings.KAIZEN_OWNER_EMAILS)


class EmailChannel(ChannelBase):
    name = "email"

    def configured(self) -> bool:
        return not self.missing()

    def missing(self) -> list[str]:
        return [] if owner_addresses() else ["KAIZEN_OWNER_EMAILS"]

    def send(self, *, message: Message) -> DeliveryResult:
        message_id = make_msgid(domain="kaizen")
        email = EmailMultiAlternatives(
            subject=f"[Kaizen {message.severity}] {message.title}",
            body=message.text,
            to=owner_addresses(),
            headers={"Message-ID": message_id},
        )
        email.attach_alternative(message.html, "text/html")
        try:
            email.send(fail_silently=False)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            raise DeliveryError(f"the mail server refused the message: {exc}", transient=False) from exc
        except smtplib.SMTPResponseException as exc:
            # 4yz replies are the server's "try again later" (RFC 5321 §4.2.1); 5yz are final.
            raise DeliveryError(f"the mail server answered {exc.smtp_code}", transient=exc.smtp_code < 500) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"could not reach the mail server: {exc}", transient=True) from exc
        return DeliveryResult(provider_id=message_id)
