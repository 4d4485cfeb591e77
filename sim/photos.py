"""The simulated phones' photos: ``validation.phone_photo`` makes them (the demo seeds its
submissions with the same), shared from there because the simulator and ``api/`` may not import
each other."""

from validation.phone_photo import PHOTO_SIZE, dms, phone_exif, phone_photo, rational

__all__ = ["PHOTO_SIZE", "dms", "phone_exif", "phone_photo", "rational"]
