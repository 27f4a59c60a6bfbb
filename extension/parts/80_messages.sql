--------------------------------------------------------------------------------
-- Messages for the school application, in Dutch (the procedure's exact texts),
-- French and English. SET m365.language = 'fr' (or 'en'); default 'nl'.
-- '$$$' stands for the username as typed, '<reason>' for a reason.
--------------------------------------------------------------------------------

CREATE TABLE m365.message (
    code     text NOT NULL,
    language text NOT NULL CONSTRAINT message_language_known CHECK (language OPERATOR(pg_catalog.=) ANY ('{nl,fr,en}'::text[])),
    text     text NOT NULL,
    PRIMARY KEY (code, language)
);
COMMENT ON TABLE m365.message IS 'The texts the administration functions answer with, per language (nl, fr, en)';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.message');

INSERT INTO m365.message (code, language, text) VALUES
    ('username_empty', 'nl', 'Gebruikersnaam mag niet leeg zijn'),
    ('username_empty', 'fr', 'Le nom d''utilisateur ne peut pas être vide'),
    ('username_empty', 'en', 'The username must not be empty'),
    ('username_invalid', 'nl', 'Ongeldige gebruikersnaam'),
    ('username_invalid', 'fr', 'Nom d''utilisateur non valide'),
    ('username_invalid', 'en', 'Invalid username'),
    ('username_in_use', 'nl', 'Gebruikersnaam fout ''$$$'' is al in gebruik. Pas de gebruikersnaam aan.'),
    ('username_in_use', 'fr', 'Erreur de nom d''utilisateur : ''$$$'' est déjà utilisé. Modifiez le nom d''utilisateur.'),
    ('username_in_use', 'en', 'Username error: ''$$$'' is already in use. Change the username.'),
    ('domain_not_allowed', 'nl', 'Domeinnaam fout De gebruikersnaam ''$$$'' mag geen domeinnaam bevatten in deze configuratie'),
    ('domain_not_allowed', 'fr', 'Erreur de nom de domaine : le nom d''utilisateur ''$$$'' ne peut pas contenir de nom de domaine dans cette configuration'),
    ('domain_not_allowed', 'en', 'Domain error: the username ''$$$'' may not contain a domain name in this configuration'),
    ('sync_not_saved', 'nl', 'Opslaan sync mislukt'),
    ('sync_not_saved', 'fr', 'Échec de l''enregistrement de la synchronisation'),
    ('sync_not_saved', 'en', 'Saving the sync flag failed'),
    ('username_not_saved', 'nl', 'De gebruikersnaam ''$$$'' is niet opgeslagen: <reason>'),
    ('username_not_saved', 'fr', 'Le nom d''utilisateur ''$$$'' n''a pas été enregistré : <reason>'),
    ('username_not_saved', 'en', 'The username ''$$$'' was not saved: <reason>'),
    -- Reasons behind "not saved", and what the details say.
    ('unknown_username_id', 'nl', 'onbekende gebruikersnaam (id <reason>)'),
    ('unknown_username_id', 'fr', 'nom d''utilisateur inconnu (id <reason>)'),
    ('unknown_username_id', 'en', 'unknown username (id <reason>)'),
    ('no_suggested_username', 'nl', 'er is geen voorgestelde gebruikersnaam (de officiële namen zijn niet verbeterd, of de gebruikersnaam is met de hand getypt)'),
    ('no_suggested_username', 'fr', 'il n''y a pas de nom d''utilisateur suggéré (les noms officiels n''ont pas été corrigés, ou le nom d''utilisateur a été saisi à la main)'),
    ('no_suggested_username', 'en', 'there is no suggested username (the official names were not corrected, or the username was typed by hand)'),
    ('tenant_account_unknown', 'nl', 'het account staat niet in de geïmporteerde tenant van deze configuratie'),
    ('tenant_account_unknown', 'fr', 'le compte ne figure pas dans le tenant importé de cette configuration'),
    ('tenant_account_unknown', 'en', 'the account is not in the imported tenant of this configuration'),
    ('person_not_in_configuration', 'nl', 'de persoon heeft geen gebruikersnaam nodig in deze configuratie'),
    ('person_not_in_configuration', 'fr', 'la personne n''a pas besoin de nom d''utilisateur dans cette configuration'),
    ('person_not_in_configuration', 'en', 'the person needs no username in this configuration'),
    ('person_given_twice', 'nl', 'de persoon staat meer dan eens in de lijst'),
    ('person_given_twice', 'fr', 'la personne figure plus d''une fois dans la liste'),
    ('person_given_twice', 'en', 'the person is in the list more than once'),
    ('domain_not_accepted', 'nl', 'het domein <reason> hoort niet bij de domeinen van deze configuratie'),
    ('domain_not_accepted', 'fr', 'le domaine <reason> ne fait pas partie des domaines de cette configuration'),
    ('domain_not_accepted', 'en', 'the domain <reason> is not one of this configuration''s domains'),
    -- Diagnostics.
    ('no_configuration', 'nl', 'Er is geen M365-koppeling (configuratie) voor deze school of vestiging: de lijst blijft leeg.'),
    ('no_configuration', 'fr', 'Aucune liaison M365 (configuration) pour cette école ou implantation : la liste reste vide.'),
    ('no_configuration', 'en', 'This school or location has no M365 link (configuration): the list stays empty.'),
    ('queued', 'nl', 'De gebruikersnaam is nog niet aangemaakt: in de wachtrij sinds <reason>.'),
    ('queued', 'fr', 'Le nom d''utilisateur n''est pas encore créé : en file d''attente depuis <reason>.'),
    ('queued', 'en', 'The username has not been created yet: queued since <reason>.'),
    ('generation_failed', 'nl', 'De gebruikersnaam kon niet worden aangemaakt: <reason>. Pas de officiële naam aan of geef de gebruikersnaam zelf in.'),
    ('generation_failed', 'fr', 'Le nom d''utilisateur n''a pas pu être créé : <reason>. Corrigez le nom officiel ou saisissez le nom d''utilisateur.'),
    ('generation_failed', 'en', 'The username could not be created: <reason>. Correct the official name or type the username.'),
    ('not_queued', 'nl', 'Er is geen gebruikersnaam en de persoon staat niet in de wachtrij.'),
    ('not_queued', 'fr', 'Il n''y a pas de nom d''utilisateur et la personne n''est pas en file d''attente.'),
    ('not_queued', 'en', 'There is no username and the person is not queued.'),
    ('enrolment_in_future', 'nl', 'De inschrijving in deze vestiging start pas op <reason>.'),
    ('enrolment_in_future', 'fr', 'L''inscription dans cette implantation ne commence que le <reason>.'),
    ('enrolment_in_future', 'en', 'The enrolment in this location only starts on <reason>.'),
    ('enrolment_ended', 'nl', 'De inschrijving in deze vestiging is beëindigd op <reason>.'),
    ('enrolment_ended', 'fr', 'L''inscription dans cette implantation a pris fin le <reason>.'),
    ('enrolment_ended', 'en', 'The enrolment in this location ended on <reason>.'),
    ('no_enrolment_this_school_year', 'nl', 'De leerling heeft geen inschrijving in deze vestiging voor het schooljaar <reason>.'),
    ('no_enrolment_this_school_year', 'fr', 'L''élève n''a pas d''inscription dans cette implantation pour l''année scolaire <reason>.'),
    ('no_enrolment_this_school_year', 'en', 'The student has no enrolment in this location for the school year <reason>.'),
    ('not_linked_to_school', 'nl', 'Het personeelslid is niet gekoppeld aan deze school.'),
    ('not_linked_to_school', 'fr', 'Le membre du personnel n''est pas lié à cette école.'),
    ('not_linked_to_school', 'en', 'The staff member is not linked to this school.'),
    ('inactive_listed', 'nl', 'Het personeelslid is niet meer actief (sinds <reason>) en blijft zichtbaar tot het einde van het schooljaar; in M365 verdwijnt het uit de groepen.'),
    ('inactive_listed', 'fr', 'Le membre du personnel n''est plus actif (depuis le <reason>) et reste visible jusqu''à la fin de l''année scolaire ; dans M365, il quitte les groupes.'),
    ('inactive_listed', 'en', 'The staff member is no longer active (since <reason>) and stays listed until the end of the school year; in M365 they leave the groups.'),
    ('inactive_not_listed', 'nl', 'Het personeelslid is niet meer actief sinds <reason>.'),
    ('inactive_not_listed', 'fr', 'Le membre du personnel n''est plus actif depuis le <reason>.'),
    ('inactive_not_listed', 'en', 'The staff member has not been active since <reason>.'),
    ('sync_off', 'nl', 'De Sync-checkbox staat uit: de gebruikersnaam gaat niet naar M365.'),
    ('sync_off', 'fr', 'La case Sync est décochée : le nom d''utilisateur n''est pas envoyé vers M365.'),
    ('sync_off', 'en', 'The sync flag is off: the username does not go to M365.'),
    ('no_domain', 'nl', 'Er is geen domein voor deze gebruikersnaam (de vestiging of school heeft er geen): SDS slaat de gebruiker over.'),
    ('no_domain', 'fr', 'Aucun domaine pour ce nom d''utilisateur (l''implantation ou l''école n''en a pas) : SDS ignore l''utilisateur.'),
    ('no_domain', 'en', 'There is no domain for this username (the location or school has none): SDS leaves the user out.'),
    ('domain_removed', 'nl', 'De gebruikersnaam heeft geen domein meer (de school heeft er wel een: <reason>): SDS slaat de gebruiker over. Geef het domein opnieuw in.'),
    ('domain_removed', 'fr', 'Le nom d''utilisateur n''a plus de domaine (l''école en a un : <reason>) : SDS ignore l''utilisateur. Saisissez à nouveau le domaine.'),
    ('domain_removed', 'en', 'The username no longer has a domain (the school has one: <reason>): SDS leaves the user out. Type the domain again.'),
    ('username_held', 'nl', 'De gebruikersnaam hoorde bij <reason>, die onder dezelfde id werd verwijderd: hij blijft buiten M365 tot een beheerder bevestigt dat het dezelfde persoon is (m365.confirm_held_username) of hem vrijgeeft (m365.release_held_username).'),
    ('username_held', 'fr', 'Le nom d''utilisateur appartenait à <reason>, supprimé sous le même identifiant : il reste hors de M365 jusqu''à ce qu''un administrateur confirme qu''il s''agit de la même personne (m365.confirm_held_username) ou le libère (m365.release_held_username).'),
    ('username_held', 'en', 'The username belonged to <reason>, deleted under the same id: it stays out of M365 until an administrator confirms it is the same person (m365.confirm_held_username) or releases it (m365.release_held_username).'),
    ('edit_leaves_feed', 'nl', 'De gebruikersnaam ''$$$'' is opgeslagen zonder domein: SDS slaat deze gebruiker over tot er een domein is.'),
    ('edit_leaves_feed', 'fr', 'Le nom d''utilisateur ''$$$'' est enregistré sans domaine : SDS ignore cet utilisateur tant qu''il n''a pas de domaine.'),
    ('edit_leaves_feed', 'en', 'The username ''$$$'' was saved without a domain: SDS leaves this user out until it has one.'),
    ('no_synced_user_in_location', 'nl', 'Er is geen enkele gebruiker met Sync aan in deze vestiging: de beveiligingsgroep wordt niet aangemaakt.'),
    ('no_synced_user_in_location', 'fr', 'Aucun utilisateur avec Sync activé dans cette implantation : le groupe de sécurité n''est pas créé.'),
    ('no_synced_user_in_location', 'en', 'No user of this location has sync on: its security group is not created.'),
    ('listed_and_synced', 'nl', 'De gebruikersnaam staat in de lijst en Sync staat aan. Staat de gebruiker niet in M365, controleer dan de sync logs in het SDS dashboard.'),
    ('listed_and_synced', 'fr', 'Le nom d''utilisateur est dans la liste et Sync est activé. Si l''utilisateur n''est pas dans M365, consultez les journaux de synchronisation du tableau de bord SDS.'),
    ('listed_and_synced', 'en', 'The username is listed and sync is on. If the user is not in M365, check the sync logs in the SDS dashboard.');

-- The language asked for with SET m365.language; Dutch when unset or unknown.
CREATE FUNCTION m365.language()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN pg_catalog.lower(coalesce(pg_catalog.current_setting('m365.language', true), '') COLLATE "C")
                 OPERATOR(pg_catalog.=) ANY ('{nl,fr,en}'::text[])
            THEN pg_catalog.lower(pg_catalog.current_setting('m365.language', true) COLLATE "C")
            ELSE 'nl' END;
COMMENT ON FUNCTION m365.language() IS 'The language of messages: SET m365.language = nl | fr | en (default nl)';

-- A message in the current language, $$$ and <reason> filled in.
CREATE FUNCTION m365.message(code text, username text DEFAULT NULL, reason text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT pg_catalog.replace(pg_catalog.replace(m.text, '$$$', coalesce(message.username, '')),
                                  '<reason>', coalesce(message.reason, ''))
          FROM m365.message AS m
         WHERE m.code OPERATOR(pg_catalog.=) message.code
           AND m.language OPERATOR(pg_catalog.=) m365.language());
COMMENT ON FUNCTION m365.message(text, text, text) IS 'A message in the language of m365.language, with $$$ and <reason> filled in';

